// test/http/validate-openapi.mjs: checks http/openapi.json, the document
// p2pay-http serves at /api/v1/openapi.json and Swagger UI renders.
//
// 1. It is a valid OpenAPI 3.0 document (swagger-parser validates it against
//    the OpenAPI schema and resolves every $ref).
// 2. It describes exactly the daemon's endpoints: the (method, path) pairs
//    of the endpoints[] table of tools/p2pay-http.c, and every other
//    /api/v1/ path the C names (health, the document, the docs page, the
//    feed), no more and no fewer.  A path parameter ({id}) stands for the
//    table's '*'.
//
// Usage: node test/http/validate-openapi.mjs [OPENAPI_JSON [DAEMON_C]]
// (defaults: http/openapi.json and tools/p2pay-http.c of this tree).  Needs
// `npm ci` in http/ (swagger-parser is one of its devDependencies).  Exits 0
// when both checks pass, 1 with the list of problems otherwise.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const docPath = resolve(process.argv[2] ?? `${root}/http/openapi.json`);
const daemonPath = resolve(process.argv[3] ?? `${root}/tools/p2pay-http.c`);
const problems = [];

// swagger-parser lives in http/node_modules, not next to this script.
let SwaggerParser;
try {
  SwaggerParser = createRequire(`${root}/http/package.json`)('@apidevtools/swagger-parser');
} catch (e) {
  console.error(`validate-openapi: can't load @apidevtools/swagger-parser from ${root}/http/node_modules ` +
    `(run "npm ci" in http/): ${e.message}`);
  process.exit(1);
}

let doc;
try {
  doc = JSON.parse(readFileSync(docPath, 'utf8'));
} catch (e) {
  console.error(`validate-openapi: ${docPath}: ${e.message}`);
  process.exit(1);
}

// 1. The document against the OpenAPI 3.0 schema; validate() dereferences a
//    copy, so the original keeps its $refs for the comparison below.
if (doc.openapi !== '3.0.3')
  problems.push(`openapi is ${JSON.stringify(doc.openapi)}, not "3.0.3"`);
try {
  await SwaggerParser.validate(structuredClone(doc));
} catch (e) {
  const details = Array.isArray(e.details) && e.details.length
    ? e.details.map((d) => `  ${(d.instancePath ?? d.path ?? '')} ${d.message}`).join('\n')
    : '';
  problems.push(`not a valid OpenAPI document: ${e.message}${details ? '\n' + details : ''}`);
}

// C without its comments; string and character literals are kept whole
// (a path pattern such as "/api/v1/payments/*" holds a comment's opening).
function withoutComments(c) {
  let out = '';
  for (let i = 0; i < c.length;) {
    if (c[i] === '"' || c[i] === "'") {
      let j = i + 1;
      while (j < c.length && c[j] !== c[i] && c[j] !== '\n') j += c[j] === '\\' ? 2 : 1;
      out += c.slice(i, j + 1);
      i = j + 1;
    } else if (c.startsWith('/*', i)) {
      const end = c.indexOf('*/', i + 2);
      i = end < 0 ? c.length : end + 2;
      out += ' ';
    } else if (c.startsWith('//', i)) {
      const end = c.indexOf('\n', i);
      i = end < 0 ? c.length : end;
    } else
      out += c[i++];
  }
  return out;
}

// 2. The daemon's endpoints, read from its C.
const methods = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];
const normal = (p) => p.replace(/\{[^}/]+\}/g, '*');
const documented = new Set();
const documentedPaths = new Set();
for (const [path, item] of Object.entries(doc.paths ?? {})) {
  documentedPaths.add(normal(path));
  for (const m of methods)
    if (item[m]) documented.add(`${m.toUpperCase()} ${normal(path)}`);
}

const source = withoutComments(readFileSync(daemonPath, 'utf8'));
const served = new Set();
const servedPaths = new Set();
// the table's rows: {"METHOD", "/api/v1/...", ...
for (const m of source.matchAll(/\{\s*"([A-Z]+)"\s*,\s*"(\/api\/v1\/[^"]*)"/g)) {
  served.add(`${m[1]} ${m[2]}`);
  servedPaths.add(m[2]);
}
// any other /api/v1/ path the C names (a prefix ending in '/' is not a path)
for (const m of source.matchAll(/"(\/api\/v1\/[^"]*[^"/])"/g))
  servedPaths.add(m[1]);
if (served.size === 0)
  problems.push(`${daemonPath}: no {"METHOD", "/api/v1/..."} rows found in its endpoints[] table`);

for (const op of served)
  if (!documented.has(op))
    problems.push(`the daemon serves ${op}, which the document does not describe`);
for (const p of servedPaths)
  if (!documentedPaths.has(p))
    problems.push(`the daemon names path ${p}, which the document does not describe`);
for (const op of documented) {
  const path = op.slice(op.indexOf(' ') + 1);
  // a row of the table decides a path's methods; a path the C names only
  // as a string (health, the docs) is served with GET
  const rows = [...served].filter((s) => s.endsWith(` ${path}`));
  if (rows.length ? !served.has(op) : !(servedPaths.has(path) && op.startsWith('GET ')))
    problems.push(`the document describes ${op}, which the daemon does not serve`);
}

if (problems.length) {
  console.error(`validate-openapi: ${docPath}:\n` + problems.map((p) => `- ${p}`).join('\n'));
  process.exit(1);
}
console.log(`validate-openapi: ${docPath}: valid OpenAPI ${doc.openapi}; its ${documented.size} operations ` +
  `are the daemon's (${served.size} in its endpoints table, ${servedPaths.size} paths)`);
