// A media proxy in the style of a typical Express-free Node.js server: one
// https.Agent shared by every request, the upstream response piped to the
// listener, and the Range header passed through.
//
// Usage: node node_proxy.mjs CONFIG.json
// CONFIG is {"port": 8080, "keepAlive": true, "caFile": "ca.pem",
//            "routes": {"VIDEO_ID:QUALITY": "https://127.0.0.1:PORT/media/..."}}
// It listens on 127.0.0.1 only. GET /proxy?v=VIDEO_ID&quality=QUALITY
// streams the route's upstream URL, and GET /health returns 200.

import fs from "node:fs";
import http from "node:http";
import https from "node:https";

const PASSED_HEADERS = ["content-type", "content-length", "content-range", "accept-ranges"];

function loadConfig(path) {
  const config = JSON.parse(fs.readFileSync(path, "utf8"));
  if (!Number.isInteger(config.port) || typeof config.routes !== "object") {
    throw new Error(`invalid config ${path}: expected a port and routes`);
  }
  return config;
}

function pickHeaders(upstreamHeaders) {
  const headers = {};
  for (const name of PASSED_HEADERS) {
    if (upstreamHeaders[name] !== undefined) headers[name] = upstreamHeaders[name];
  }
  return headers;
}

function sendError(res, status, message) {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify({ error: message }));
}

function proxyMedia(req, res, upstreamUrl, agent, ca) {
  const headers = { "accept-encoding": "identity" };
  if (req.headers.range) headers.range = req.headers.range;
  const upstreamReq = https.request(upstreamUrl, { agent, ca, headers }, (upstreamRes) => {
    res.writeHead(upstreamRes.statusCode, pickHeaders(upstreamRes.headers));
    upstreamRes.pipe(res);
    upstreamRes.on("error", () => res.destroy());
  });
  upstreamReq.on("error", (error) => sendError(res, 502, `upstream failed: ${error.code}`));
  // A listener that leaves stops the upstream download too.
  res.on("close", () => {
    if (!res.writableFinished) upstreamReq.destroy();
  });
  upstreamReq.end();
}

function main() {
  const config = loadConfig(process.argv[2]);
  const ca = fs.readFileSync(config.caFile);
  const agent = new https.Agent({ keepAlive: Boolean(config.keepAlive) });
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://127.0.0.1");
    if (url.pathname === "/health") {
      res.writeHead(200, { "content-type": "text/plain" });
      res.end("ok\n");
      return;
    }
    const key = `${url.searchParams.get("v")}:${url.searchParams.get("quality") ?? "high"}`;
    const upstreamUrl = config.routes[key];
    if (url.pathname !== "/proxy" || upstreamUrl === undefined) {
      sendError(res, 404, `no route for ${url.pathname} ${key}`);
      return;
    }
    proxyMedia(req, res, upstreamUrl, agent, ca);
  });
  server.keepAliveTimeout = 60_000;
  server.listen(config.port, "127.0.0.1");
  // Open streams would hold server.close() back, and the harness only needs
  // the process gone.
  process.on("SIGTERM", () => process.exit(0));
  process.on("SIGINT", () => process.exit(0));
}

main();
