// snippet:start jose
import { createRemoteJWKSet, jwtVerify } from 'jose'

export function joseVerifier (jwksUrl, cacheSeconds) {
  // Refetches when the set is older than cacheMaxAge, and when a token names an unknown
  // kid, but at most once per cooldownDuration: keep both well under prePublish.
  const JWKS = createRemoteJWKSet(new URL(jwksUrl), {
    cacheMaxAge: cacheSeconds * 1000,
    cooldownDuration: Math.min(cacheSeconds * 1000, 30_000),
    timeoutDuration: 5_000
  })
  return async function verify (token, algorithm, issuer, audience) {
    const { payload } = await jwtVerify(token, JWKS, {
      algorithms: [algorithm], // the keyset's spec.algorithm: never the token's
      issuer,
      audience,
      requiredClaims: ['exp'],
      clockTolerance: 1
    })
    return payload
  }
}
// snippet:end jose
