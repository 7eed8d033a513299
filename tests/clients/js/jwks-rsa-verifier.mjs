// snippet:start jwks-rsa
import jwt from 'jsonwebtoken'
import jwksClient from 'jwks-rsa'

export function jwksRsaVerifier (jwksUrl, cacheSeconds) {
  // Caches each signing key by kid for cacheMaxAge; an unknown kid fetches the set again
  // (at most jwksRequestsPerMinute times a minute).
  const client = jwksClient({
    jwksUri: jwksUrl,
    cache: true,
    cacheMaxAge: cacheSeconds * 1000,
    rateLimit: true,
    jwksRequestsPerMinute: 60,
    timeout: 5_000
  })
  const getKey = (header, callback) => {
    client.getSigningKey(header.kid).then(
      (key) => callback(null, key.getPublicKey()),
      (error) => callback(error)
    )
  }
  return function verify (token, algorithm, issuer, audience) {
    return new Promise((resolve, reject) => {
      jwt.verify(token, getKey, {
        algorithms: [algorithm], // the keyset's spec.algorithm: never the token's
        issuer,
        audience,
        clockTolerance: 1
      }, (error, payload) => (error ? reject(error) : resolve(payload)))
    })
  }
}
// snippet:end jwks-rsa
