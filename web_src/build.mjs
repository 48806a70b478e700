// Builds the editor extension's viewer bundle from src/viewer.js with esbuild:
//   comfy_avatar_nodes/web/vendor/avatar-viewer.bundle.mjs   three + @pixiv/three-vrm + the viewer, one ES module
//   comfy_avatar_nodes/web/vendor/THIRD_PARTY_LICENSES.txt   the licence of every package in it
//
//   npm ci && node build.mjs           (re)write both files
//   npm ci && node build.mjs --check   exit 1 when the committed files differ from a fresh build
//
// Reproducible: exact versions from package-lock.json (npm ci), fixed esbuild options, no dates or
// absolute paths in the output; the banner names the versions and the lock file's sha256.
// The bundle ends in .mjs so the editor does not load it as an extension at start-up (ComfyUI lists
// every *.js under the web directory as one); avatar_nodes.js imports it when a node needs a viewer.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const outDir = join(here, '..', 'comfy_avatar_nodes', 'web', 'vendor');
const bundlePath = join(outDir, 'avatar-viewer.bundle.mjs');
const licensePath = join(outDir, 'THIRD_PARTY_LICENSES.txt');
const check = process.argv.includes('--check');

const pkgJson = (name) => JSON.parse(readFileSync(join(here, 'node_modules', name, 'package.json'), 'utf8'));
const lockText = readFileSync(join(here, 'package-lock.json'));
const lock = JSON.parse(lockText);
// npm ci put exactly the locked versions there; refuse anything else (a stale node_modules).
for (const name of ['three', '@pixiv/three-vrm', 'esbuild']) {
  const want = lock.packages[`node_modules/${name}`]?.version;
  const have = pkgJson(name).version;
  if (want !== have) {
    console.error(`node_modules/${name} is ${have}, package-lock.json says ${want}: run \`npm ci\` in web_src/`);
    process.exit(2);
  }
}
const versions = { three: pkgJson('three').version, threeVrm: pkgJson('@pixiv/three-vrm').version, esbuild: esbuild.version };
const lockSha = createHash('sha256').update(lockText).digest('hex');

const result = await esbuild.build({
  entryPoints: [join(here, 'src', 'viewer.js')],
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
  minify: true,
  legalComments: 'none', // every bundled package's licence goes into THIRD_PARTY_LICENSES.txt instead
  charset: 'utf8',
  define: {
    __THREE_VERSION__: JSON.stringify(versions.three),
    __THREE_VRM_VERSION__: JSON.stringify(versions.threeVrm),
  },
  banner: {
    js: `// comfy-avatar VRM viewer: three ${versions.three}, @pixiv/three-vrm ${versions.threeVrm}; esbuild `
      + `${versions.esbuild}; web_src/package-lock.json sha256 ${lockSha}\n`
      + '// Built by web_src/build.mjs from web_src/src/viewer.js; licences: THIRD_PARTY_LICENSES.txt beside this file.',
  },
  metafile: true,
  write: false,
  logLevel: 'warning',
});
const bundle = result.outputFiles[0].contents;

// The packages whose files went into the bundle, from esbuild's own record of its inputs.
const packages = new Map();
for (const input of Object.keys(result.metafile.inputs)) {
  const m = input.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//);
  if (m && !packages.has(m[1])) packages.set(m[1], pkgJson(m[1]));
}
const licenseFile = (name) => {
  for (const f of ['LICENSE', 'LICENSE.md', 'LICENSE.txt', 'license', 'LICENCE']) {
    const p = join(here, 'node_modules', name, f);
    if (existsSync(p)) return readFileSync(p, 'utf8').trim();
  }
  return null;
};
const sections = [...packages.keys()].sort().map((name) => {
  const pkg = packages.get(name);
  const text = licenseFile(name);
  const repo = typeof pkg.repository === 'string' ? pkg.repository : pkg.repository?.url ?? '';
  return [`${name} ${pkg.version} (${pkg.license})`, repo, '', text ?? `licence: ${pkg.license} (the package ships no licence file)`]
    .filter((x, i) => i !== 1 || x).join('\n');
});
const licenses = [
  'Third-party code in avatar-viewer.bundle.mjs (built by web_src/build.mjs; list taken from esbuild\'s metafile).',
  '',
  ...sections.flatMap((s) => ['='.repeat(78), s, '']),
].join('\n');

const files = [[bundlePath, Buffer.from(bundle)], [licensePath, Buffer.from(licenses)]];
if (check) {
  const stale = files.filter(([p, data]) => !existsSync(p) || !readFileSync(p).equals(data));
  for (const [p] of stale) console.error(`${relative(join(here, '..'), p)} differs from a fresh build: run \`node build.mjs\` in web_src/`);
  console.log(JSON.stringify({ ok: stale.length === 0, bytes: bundle.length, packages: [...packages.keys()].sort(), lock_sha256: lockSha }));
  process.exit(stale.length ? 1 : 0);
}
mkdirSync(outDir, { recursive: true });
for (const [p, data] of files) writeFileSync(p, data);
console.log(JSON.stringify({ wrote: files.map(([p]) => relative(join(here, '..'), p)), bytes: bundle.length,
  packages: [...packages.keys()].sort() }));
