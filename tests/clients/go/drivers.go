package main

// The three libraries behind the one request/answer loop of main.go: each keeps what the
// snippets (jwx.go, keyfunc.go, oidc.go) build once per JWKS URL or issuer, for the life
// of the process.

import (
	"context"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/lestrrat-go/jwx/v3/jwk"
)

// perKey builds a value once per key (a failed build is tried again next time).
func perKey[V any](build func(string) (V, error)) func(string) (V, error) {
	built := map[string]V{}
	return func(key string) (V, error) {
		if value, ok := built[key]; ok {
			return value, nil
		}
		value, err := build(key)
		if err == nil {
			built[key] = value
		}
		return value, err
	}
}

func newJwx(ctx context.Context, ttl time.Duration) verifier {
	sets := perKey(func(url string) (jwk.Set, error) { return jwxKeySet(ctx, url, ttl) })
	return func(ctx context.Context, r request) (string, error) {
		keys, err := sets(r.JWKS)
		if err != nil {
			return "", err
		}
		if _, err := jwxVerify(r.Token, keys, r.Issuer, r.Audience); err != nil {
			return "", err
		}
		return tokenKid(r.Token), nil
	}
}

func newKeyfunc(ctx context.Context, ttl time.Duration) verifier {
	funcs := perKey(func(url string) (keyfunc.Keyfunc, error) { return keyfuncFor(ctx, url, ttl) })
	return func(ctx context.Context, r request) (string, error) {
		k, err := funcs(r.JWKS)
		if err != nil {
			return "", err
		}
		if _, err := keyfuncVerify(r.Token, k, r.Alg, r.Issuer, r.Audience); err != nil {
			return "", err
		}
		return tokenKid(r.Token), nil
	}
}

// newOidc keeps one verifier per issuer; the conformance suite gives each keyset (so each
// issuer) one algorithm.
func newOidc(ctx context.Context) verifier {
	var current request
	verifiers := perKey(func(issuer string) (*oidc.IDTokenVerifier, error) {
		return oidcVerifier(ctx, issuer, current.Audience, current.Alg)
	})
	return func(ctx context.Context, r request) (string, error) {
		current = r
		v, err := verifiers(r.Issuer)
		if err != nil {
			return "", err
		}
		if _, err := v.Verify(ctx, r.Token); err != nil {
			return "", err
		}
		return tokenKid(r.Token), nil
	}
}
