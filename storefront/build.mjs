// Bundles the storefront into dist/: app.js (minified, from src/main.ts),
// index.html and app.css. Run by `npm run build` after the client is
// generated and type-checked.

import { build } from 'esbuild';
import { copyFile, mkdir, readFile, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const root = dirname(fileURLToPath(import.meta.url));
const dist = join(root, 'dist');

await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });
await build({
  entryPoints: [join(root, 'src/main.ts')],
  outfile: join(dist, 'app.js'),
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2020', 'chrome90', 'firefox90', 'safari15'],
  sourcemap: false,
  legalComments: 'none',
  logLevel: 'warning',
});
for (const file of ['index.html', 'app.css']) await copyFile(join(root, file), join(dist, file));

for (const file of ['app.js', 'app.css', 'index.html']) {
  const path = join(dist, file);
  const { size } = await stat(path);
  const gzipped = gzipSync(await readFile(path)).length;
  console.log(`dist/${file}  ${(size / 1024).toFixed(1)} KiB  (${(gzipped / 1024).toFixed(1)} KiB gzipped)`);
}
