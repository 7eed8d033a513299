package dev.jwks.clients;

import com.nimbusds.jose.JWSObject;
import com.nimbusds.jose.proc.SecurityContext;
import com.nimbusds.jose.util.JSONObjectUtils;
import com.nimbusds.jwt.proc.DefaultJWTProcessor;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Verifies JWTs with Nimbus JOSE+JWT, driven over stdin/stdout.
 *
 * <p>One JSON request a line on stdin ({jwks, issuer, audience, alg, token}), one JSON
 * answer a line on stdout ({"ok": true, "kid"} or {"ok": false, "error"}). The argument is
 * the JWKS cache lifetime in seconds. One JWK source per JWKS URL and algorithm lives as
 * long as the process, as in a service.
 */
public final class VerifyTokens {
  private VerifyTokens() {}


  public static void main(String[] args) throws Exception {
    long ttlMillis = (long) (Double.parseDouble(args[0]) * 1000);
    Map<String, DefaultJWTProcessor<SecurityContext>> processors = new HashMap<>();
    BufferedReader in =
        new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    String line;
    while ((line = in.readLine()) != null) {
      Map<String, Object> request = JSONObjectUtils.parse(line);
      String url = (String) request.get("jwks");
      String alg = (String) request.get("alg");
      String token = (String) request.get("token");
      Map<String, Object> answer = new LinkedHashMap<>();
      try {
        DefaultJWTProcessor<SecurityContext> processor =
            processors.computeIfAbsent(
                url + " " + alg,
                k -> {
                  try {
                    return NimbusVerifier.processor(
                        NimbusVerifier.keys(new URL(url), ttlMillis),
                        alg,
                        (String) request.get("issuer"),
                        (String) request.get("audience"));
                  } catch (java.net.MalformedURLException e) {
                    throw new IllegalArgumentException(e);
                  }
                });
        processor.process(token, null);
        answer.put("ok", true);
        answer.put("kid", JWSObject.parse(token).getHeader().getKeyID());
      } catch (Exception e) {
        answer.put("ok", false);
        answer.put("error", e.getClass().getSimpleName() + ": " + e.getMessage());
      }
      System.out.println(JSONObjectUtils.toJSONString(answer));
      System.out.flush();
    }
  }
}
