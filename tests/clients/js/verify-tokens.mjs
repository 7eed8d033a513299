// Verifies JWTs with one real JavaScript library, driven over stdin/stdout.
//
// One JSON request a line on stdin ({jwks, issuer, audience, alg, token}), one JSON answer
// a line on stdout ({ok: true, kid} or {ok: false, error}). argv[2] picks the library
// (jose or jwks-rsa), argv[3] is the JWKS cache lifetime in seconds. One cache per JWKS
// URL lives as long as the process, as in a service.
import { createInterface } from 'node:readline'
import { joseVerifier } from './jose-verifier.mjs'
import { jwksRsaVerifier } from './jwks-rsa-verifier.mjs'

const libraries = { jose: joseVerifier, 'jwks-rsa': jwksRsaVerifier }
const make = libraries[process.argv[2]]
const seconds = Number(process.argv[3])
if (!make || !(seconds > 0)) {
  console.error('usage: verify-tokens.mjs jose|jwks-rsa CACHE_SECONDS')
  process.exit(2)
}
const verifiers = new Map()

function kidOf (token) {
  try {
    return JSON.parse(Buffer.from(token.split('.')[0], 'base64url')).kid
  } catch {
    return undefined
  }
}

// Requests are answered one at a time, in order.
const lines = createInterface({ input: process.stdin })
for await (const line of lines) {
  const request = JSON.parse(line)
  if (!verifiers.has(request.jwks)) verifiers.set(request.jwks, make(request.jwks, seconds))
  let answer
  try {
    await verifiers.get(request.jwks)(request.token, request.alg, request.issuer, request.audience)
    answer = { ok: true, kid: kidOf(request.token) }
  } catch (error) {
    answer = { ok: false, error: `${error.name}: ${error.message}` }
  }
  process.stdout.write(JSON.stringify(answer) + '\n')
}
