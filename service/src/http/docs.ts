/**
 * GET /docs: an interactive page for /openapi.json (Swagger UI), served entirely by this process
 * from the installed swagger-ui-dist package — no CDN, so it works on a machine without network and
 * under a Content-Security-Policy that allows scripts and styles from this origin only.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Hono } from 'hono';

/** The page's policy: its own scripts, styles and the spec from this origin; images also as data: URIs (Swagger UI's icons). */
export const DOCS_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const ASSETS: Record<string, string> = {
  'swagger-ui-bundle.js': 'text/javascript; charset=utf-8',
  'swagger-ui.css': 'text/css; charset=utf-8',
};

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>kreg registration API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/init.js"></script>
</body>
</html>
`;

// A file, not an inline script, so the policy needs no 'unsafe-inline'.
const INIT = `window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#swagger-ui', deepLinking: true, tryItOutEnabled: false });\n`;

export function mountDocs(app: Hono<any>): void {
  const dist = dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));
  // Read on first request and kept: the bundle is 1.5 MB; most processes never serve it.
  const cache = new Map<string, Buffer>();
  const asset = (name: string): Buffer => {
    let body = cache.get(name);
    if (!body) cache.set(name, (body = readFileSync(join(dist, name))));
    return body;
  };
  app.get('/docs', (c) => {
    c.header('content-security-policy', DOCS_CSP);
    return c.html(PAGE);
  });
  app.get('/docs/assets/:name', (c) => {
    const name = c.req.param('name');
    if (name === 'init.js') {
      c.header('content-type', 'text/javascript; charset=utf-8');
      return c.body(INIT);
    }
    const type = ASSETS[name];
    if (!type) return c.notFound();
    c.header('content-type', type);
    c.header('cache-control', 'public, max-age=86400');
    return c.body(new Uint8Array(asset(name)));
  });
}
