// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.24;

/// @title MnemoAnchor
/// @notice One Merkle root per epoch over all mnemo users' chain checkpoints
///         (docs/FORMAT.md section 7.1). Anchors form their own chain: epochs strictly
///         increase and each anchor names the root before it, so a missing or replaced
///         anchor is visible to anyone reading the log.
contract MnemoAnchor {
    /// @notice The only account that may anchor. (A storage variable, not `immutable`, so
    ///         the runtime code at every deployment equals the compiled runtime code and an
    ///         auditor can compare them byte for byte.)
    address public owner;
    /// @notice The last anchored epoch (0 before the first anchor).
    uint64 public lastEpoch;
    /// @notice The last anchored root (zero before the first anchor).
    bytes32 public lastRoot;

    /// @notice Emitted once per anchored epoch.
    event Anchored(bytes32 indexed root, uint64 indexed epoch, uint32 leafCount, bytes32 prevRoot);

    error NotOwner();
    error EpochNotIncreasing(uint64 last, uint64 given);
    error WrongPrevRoot(bytes32 expected, bytes32 given);

    constructor() {
        owner = msg.sender;
    }

    /// @notice Commits `root` as the root of `epoch`, covering `leafCount` users.
    function anchor(bytes32 root, uint64 epoch, uint32 leafCount, bytes32 prevRoot) external {
        if (msg.sender != owner) revert NotOwner();
        if (epoch <= lastEpoch) revert EpochNotIncreasing(lastEpoch, epoch);
        if (prevRoot != lastRoot) revert WrongPrevRoot(lastRoot, prevRoot);
        lastEpoch = epoch;
        lastRoot = root;
        emit Anchored(root, epoch, leafCount, prevRoot);
    }
}
