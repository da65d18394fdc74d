// The verifier's entry for tests and other pages: the format's bytes and the rules.
export * from "./format";
export * from "./verifier";
