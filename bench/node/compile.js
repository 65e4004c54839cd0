// Reference for bench/render_bench.py: compile MJML documents with the Node.js `mjml` package,
// in-process and in a loop, and print per-compile timings as JSON.
//
// Input (stdin, JSON): {"documents": {"name": "<mjml>...", ...}, "iterations": 20, "warmup": 5}
// Output (stdout, JSON): {"node", "mjml", "results": {"name": {"ms_min", "ms_median", "ms_mean",
//   "iterations", "html_bytes", "errors"}}}
// Options are mjml's defaults (no minify, no beautify, comments kept, validation "soft"), which match
// mjml-python's defaults. mjml 5's mjml2html is async; each compile is awaited before the next starts.
"use strict";

const mjml2html = require("mjml");

function readStdin() {
  return new Promise((resolve, reject) => {
    const chunks = [];
    process.stdin.on("data", (chunk) => chunks.push(chunk));
    process.stdin.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    process.stdin.on("error", reject);
  });
}

async function compileOnce(source) {
  const started = process.hrtime.bigint();
  const result = await mjml2html(source, { validationLevel: "soft" });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  return { ms, result };
}

async function measure(source, iterations, warmup) {
  let last = null;
  for (let i = 0; i < warmup; i += 1) {
    last = (await compileOnce(source)).result;
  }
  const times = [];
  for (let i = 0; i < iterations; i += 1) {
    const { ms, result } = await compileOnce(source);
    times.push(ms);
    last = result;
  }
  times.sort((a, b) => a - b);
  return {
    ms_min: times[0],
    ms_median: times[Math.floor(times.length / 2)],
    ms_mean: times.reduce((a, b) => a + b, 0) / times.length,
    iterations,
    html_bytes: Buffer.byteLength(last.html, "utf8"),
    errors: (last.errors || []).length,
  };
}

async function main() {
  const request = JSON.parse(await readStdin());
  const iterations = request.iterations || 20;
  const warmup = request.warmup === undefined ? 5 : request.warmup;
  const results = {};
  for (const [name, source] of Object.entries(request.documents)) {
    results[name] = await measure(source, iterations, warmup);
  }
  const version = require("mjml/package.json").version;
  process.stdout.write(JSON.stringify({ node: process.version, mjml: version, results }) + "\n");
}

main().catch((error) => {
  process.stderr.write(`compile.js: ${error && error.stack ? error.stack : error}\n`);
  process.exit(1);
});
