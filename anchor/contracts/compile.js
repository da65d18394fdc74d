// Compiles MnemoAnchor.sol with solc-js 0.8.24 (optimizer 200 runs, evmVersion paris, so
// the same bytecode runs on Sapphire and on a local node) and prints the artifact as JSON.
const fs = require("fs");
const path = require("path");
const solc = require(process.env.SOLC_JS || "solc");

const source = fs.readFileSync(path.join(__dirname, "MnemoAnchor.sol"), "utf8");
const input = {
  language: "Solidity",
  sources: { "MnemoAnchor.sol": { content: source } },
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: "paris",
    metadata: { bytecodeHash: "none" },
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
  },
};
const out = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (out.errors || []).filter((e) => e.severity === "error");
if (errors.length) {
  console.error(errors.map((e) => e.formattedMessage).join("\n"));
  process.exit(1);
}
const c = out.contracts["MnemoAnchor.sol"].MnemoAnchor;
process.stdout.write(
  JSON.stringify(
    {
      compiler: solc.version(),
      settings: input.settings,
      abi: c.abi,
      bytecode: "0x" + c.evm.bytecode.object,
      deployedBytecode: "0x" + c.evm.deployedBytecode.object,
    },
    null,
    2,
  ) + "\n",
);
