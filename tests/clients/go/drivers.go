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

func newJwx(ctx context.Context, ttl time.Duration) verifier {
	sets := map[string]jwk.Set{}
	return func(ctx context.Context, r request) (string, error) {
		keys, ok := sets[r.JWKS]
		if !ok {
			var err error
			if keys, err = jwxKeySet(ctx, r.JWKS, ttl); err != nil {
				return "", err
			}
			sets[r.JWKS] = keys
		}
		if _, err := jwxVerify(r.Token, keys, r.Issuer, r.Audience); err != nil {
			return "", err
		}
		return tokenKid(r.Token), nil
	}
}

func newKeyfunc(ctx context.Context, ttl time.Duration) verifier {
	funcs := map[string]keyfunc.Keyfunc{}
	return func(ctx context.Context, r request) (string, error) {
		k, ok := funcs[r.JWKS]
		if !ok {
			var err error
			if k, err = keyfuncFor(ctx, r.JWKS, ttl); err != nil {
				return "", err
			}
			funcs[r.JWKS] = k
		}
		if _, err := keyfuncVerify(r.Token, k, r.Alg, r.Issuer, r.Audience); err != nil {
			return "", err
		}
		return tokenKid(r.Token), nil
	}
}

func newOidc(ctx context.Context) verifier {
	verifiers := map[string]*oidc.IDTokenVerifier{}
	return func(ctx context.Context, r request) (string, error) {
		key := r.Issuer + " " + r.Alg
		v, ok := verifiers[key]
		if !ok {
			var err error
			if v, err = oidcVerifier(ctx, r.Issuer, r.Audience, r.Alg); err != nil {
				return "", err
			}
			verifiers[key] = v
		}
		if _, err := v.Verify(ctx, r.Token); err != nil {
			return "", err
		}
		return tokenKid(r.Token), nil
	}
}
