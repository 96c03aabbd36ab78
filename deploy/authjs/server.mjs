// The Auth.js app of the shipped topology (deploy/nginx.conf): it answers /api/auth/* on the
// same origin as the ledger, and its session cookie (a JWE signed with AUTH_SECRET, the user id
// in its `sub` claim) is what the ledger's page and API accept.
//
// Sign-in here is Auth.js's Credentials provider against one demo account (AUTHJS_DEMO_USER /
// AUTHJS_DEMO_PASSWORD): replace the provider with your own (GitHub, Google, e-mail, your user
// database) and keep the rest. Run: `npm ci && node server.mjs` (PORT, default 3000).
import { createServer } from "node:http"
import { timingSafeEqual } from "node:crypto"
import { Auth } from "@auth/core"
import Credentials from "@auth/core/providers/credentials"

const secret = process.env.AUTH_SECRET
if (!secret) {
  console.error("authjs: set AUTH_SECRET (the same secret the ledger reads)")
  process.exit(2)
}
const demoUser = process.env.AUTHJS_DEMO_USER || "demo-user"
const demoPassword = process.env.AUTHJS_DEMO_PASSWORD
if (!demoPassword || demoPassword.length < 12) {
  console.error("authjs: set AUTHJS_DEMO_PASSWORD (12 characters or more) for the demo account")
  process.exit(2)
}
const MAX_BODY = 16 * 1024

function same(a, b) {
  const x = Buffer.from(String(a ?? ""))
  const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}

const config = {
  secret,
  basePath: "/api/auth",
  // The gateway in front sets X-Forwarded-Host and X-Forwarded-Proto: the origin users see.
  trustHost: true,
  session: { strategy: "jwt" },
  providers: [
    Credentials({
      name: "the demo account",
      credentials: { username: { label: "User" }, password: { label: "Password", type: "password" } },
      // The user id becomes the session's `sub` claim: the ledger's owner id for keys.
      authorize: async (given) =>
        same(given.username, demoUser) && same(given.password, demoPassword)
          ? { id: demoUser, name: demoUser }
          : null,
    }),
  ],
}

async function readBody(req) {
  const chunks = []
  let size = 0
  for await (const chunk of req) {
    size += chunk.length
    if (size > MAX_BODY) throw new Error("body too large")
    chunks.push(chunk)
  }
  return Buffer.concat(chunks)
}

const server = createServer(async (req, res) => {
  try {
    const proto = req.headers["x-forwarded-proto"] || "http"
    const host = req.headers["x-forwarded-host"] || req.headers.host
    const headers = new Headers()
    for (const [name, value] of Object.entries(req.headers)) {
      if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(", ") : value)
    }
    const body = req.method === "GET" || req.method === "HEAD" ? undefined : await readBody(req)
    const answer = await Auth(new Request(`${proto}://${host}${req.url}`, { method: req.method, headers, body }), config)
    const out = {}
    answer.headers.forEach((value, name) => {
      if (name === "set-cookie") return
      out[name] = value
    })
    const cookies = answer.headers.getSetCookie()
    if (cookies.length) out["set-cookie"] = cookies
    res.writeHead(answer.status, out)
    res.end(Buffer.from(await answer.arrayBuffer()))
  } catch (error) {
    // Never the request itself in the log: it may carry credentials.
    console.error("authjs: request failed:", error instanceof Error ? error.name : "error")
    res.writeHead(400, { "content-type": "application/json" })
    res.end('{"error":"invalid_request","error_description":"the sign-in request could not be read"}')
  }
})

const port = Number(process.env.PORT || 3000)
server.listen(port, process.env.HOST || "0.0.0.0", () => console.log(`authjs: listening on ${port}`))
