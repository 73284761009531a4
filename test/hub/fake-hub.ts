// A stand-in Hugging Face hub on 127.0.0.1 for tests (these machines have no internet). It serves
// the two routes xtuner uses, in the hub's shape: `GET /api/models/{id}/revision/{rev}` ->
// `{ sha, siblings: [{ rfilename }] }` and `GET /{id}/resolve/{sha}/{file}` (through a 302 to a
// CDN-like path, as the real hub does for large files); for datasets the same under
// `/api/datasets/{id}/...` and `/datasets/{id}/resolve/...` (repos keyed `datasets/org/name`). Bounded: it answers at most
// `maxRequests` requests and closes itself after `lifetimeMs`, so no test can hang on it.

import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeRepo {
  sha: string;
  files: Record<string, string | Uint8Array>;
  /** Answer 401 unless this Bearer token is sent. */
  token?: string;
  /** Files whose body is cut off half-way (Content-Length promises all of it). */
  truncate?: string[];
}

export interface FakeHub {
  endpoint: string;
  /** Paths requested, in order. */
  requests: string[];
  close(): Promise<void>;
}

export async function startFakeHub(
  repos: Record<string, FakeRepo>,
  { maxRequests = 200, lifetimeMs = 20_000 } = {},
): Promise<FakeHub> {
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    const url = decodeURIComponent((req.url ?? '/').split('?')[0]);
    requests.push(url);
    if (requests.length > maxRequests) {
      res.writeHead(503).end();
      server.close();
      return;
    }
    const send = (status: number, body: string | Uint8Array, type = 'application/octet-stream') => {
      res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) }).end(body);
    };
    const api = /^\/api\/(models|datasets)\/(.+)\/revision\/([^/]+)$/.exec(url);
    const resolve = /^\/(?:cdn\/)?(.+?)\/resolve\/([^/]+)\/(.+)$/.exec(url);
    const repoId = api ? (api[1] === 'datasets' ? `datasets/${api[2]}` : api[2]) : resolve?.[1];
    const repo = repoId === undefined ? undefined : repos[repoId];
    if (repo === undefined) return send(404, '{"error":"Repository not found"}', 'application/json');
    if (repo.token !== undefined && req.headers.authorization !== `Bearer ${repo.token}`) {
      return send(401, '{"error":"Access to model is restricted"}', 'application/json');
    }
    if (api) {
      const siblings = Object.keys(repo.files).map((rfilename) => ({ rfilename }));
      return send(200, JSON.stringify({ id: repoId, sha: repo.sha, siblings }), 'application/json');
    }
    const [, , sha, file] = resolve!;
    const body = repo.files[file];
    if (sha !== repo.sha || body === undefined) return send(404, 'Entry not found');
    if (!url.startsWith('/cdn/')) {
      res.writeHead(302, { location: `/cdn${url}` }).end();
      return;
    }
    if (repo.truncate?.includes(file)) {
      const bytes = Buffer.from(body);
      res.writeHead(200, { 'content-length': bytes.length });
      res.write(bytes.subarray(0, bytes.length >> 1), () => res.destroy());
      return;
    }
    send(200, body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const timer = setTimeout(() => server.close(), lifetimeMs);
  timer.unref();
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        clearTimeout(timer);
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** An endpoint where nothing listens (a port just released): what an offline machine sees. */
export async function deadEndpoint(): Promise<string> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}
