// Bundles the console into ../static (served by the front door; shipped in the package): one ES module,
// one stylesheet (uPlot's included), the page and its icon. Run by `scripts/setup.sh console`.
import { copyFile, mkdir, rm } from "node:fs/promises";
import * as esbuild from "esbuild";

const out = new URL("../static/", import.meta.url).pathname;
await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
await esbuild.build({
  entryPoints: { console: "src/main.js" },
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2022",
  legalComments: "none",
  outdir: out,
  logLevel: "warning",
});
await esbuild.build({
  entryPoints: { console: "src/console.css" },
  bundle: true,
  minify: true,
  outdir: out,
  logLevel: "warning",
});
for (const name of ["index.html", "favicon.svg"]) await copyFile(`src/${name}`, `${out}${name}`);
