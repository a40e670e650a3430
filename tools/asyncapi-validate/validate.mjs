// Validate an AsyncAPI document with the official parser (@asyncapi/parser).
//
//   node validate.mjs [FILE]      (no FILE, or "-": read the document from stdin)
//
// Prints one JSON object: {"valid": bool, "errors": N, "warnings": N, "diagnostics": [...]},
// each diagnostic as {"severity", "code", "message", "path"}. Exits 0 when the parser reports
// no errors, 1 when it does, 2 when the input cannot be read.
import { readFile } from "node:fs/promises";
import { Parser } from "@asyncapi/parser";

const SEVERITY = ["error", "warning", "info", "hint"];

async function readInput(path) {
  if (path && path !== "-") {
    return readFile(path, "utf8");
  }
  const chunks = [];
  for await (const chunk of process.stdin) {
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

let text;
try {
  text = await readInput(process.argv[2]);
} catch (error) {
  console.error(`validate.mjs: cannot read ${process.argv[2] ?? "stdin"}: ${error.message}`);
  process.exit(2);
}

const parser = new Parser();
const { document, diagnostics } = await parser.parse(text);
const found = diagnostics.map((d) => ({
  severity: SEVERITY[d.severity] ?? String(d.severity),
  code: d.code,
  message: d.message,
  path: d.path,
}));
const errors = found.filter((d) => d.severity === "error").length;
const result = {
  valid: errors === 0 && document !== undefined,
  asyncapi: document ? document.version() : null,
  errors,
  warnings: found.filter((d) => d.severity === "warning").length,
  diagnostics: found,
};
console.log(JSON.stringify(result, null, 2));
process.exit(result.valid ? 0 : 1);
