package dev.jwks.clients;

// snippet:start nimbus
import com.nimbusds.jose.JWSAlgorithm;
import com.nimbusds.jose.jwk.source.JWKSource;
import com.nimbusds.jose.jwk.source.JWKSourceBuilder;
import com.nimbusds.jose.proc.JWSVerificationKeySelector;
import com.nimbusds.jose.proc.SecurityContext;
import com.nimbusds.jwt.JWTClaimsSet;
import com.nimbusds.jwt.proc.DefaultJWTClaimsVerifier;
import com.nimbusds.jwt.proc.DefaultJWTProcessor;
import java.net.URL;
import java.util.Set;

/** A Nimbus JWT processor for one keyset: processor(...).process(token, null) throws if invalid. */
final class NimbusVerifier {
  private NimbusVerifier() {}

  /** A remote JWK set cached for {@code ttlMillis}, refetched on an unknown kid. */
  static JWKSource<SecurityContext> keys(URL jwksUrl, long ttlMillis) {
    return JWKSourceBuilder.create(jwksUrl)
        .cache(ttlMillis, 5_000) // time to live, refresh timeout
        .refreshAheadCache(false) // on by default: 30 s ahead, so the TTL must exceed 35 s
        .rateLimited(false) // else at most one refetch per 30 s on an unknown kid
        .retrying(true)
        .build();
  }

  /** Pins the keyset's algorithm and requires exp, the issuer and the audience. */
  static DefaultJWTProcessor<SecurityContext> processor(
      JWKSource<SecurityContext> keys, String algorithm, String issuer, String audience) {
    DefaultJWTProcessor<SecurityContext> processor = new DefaultJWTProcessor<>();
    processor.setJWSKeySelector(
        new JWSVerificationKeySelector<>(JWSAlgorithm.parse(algorithm), keys));
    processor.setJWTClaimsSetVerifier(
        new DefaultJWTClaimsVerifier<>(
            audience,
            new JWTClaimsSet.Builder().issuer(issuer).build(),
            Set.of("exp")));
    return processor;
  }
}
// snippet:end nimbus
