package main

import (
	"context"
	"time"

	"github.com/lestrrat-go/httprc/v3"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

func newJwx(ctx context.Context, ttl time.Duration) verifier {
	cache, err := jwk.NewCache(ctx, httprc.NewClient())
	if err != nil {
		panic(err)
	}
	sets := map[string]jwk.CachedSet{}
	return func(ctx context.Context, r request) (string, error) {
		keys, ok := sets[r.JWKS]
		if !ok {
			var err error
			if keys, err = jwxKeySet(ctx, cache, r.JWKS, ttl); err != nil {
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

// snippet:start jwx
// jwxKeySet registers a JWKS URL with a jwk.Cache that refetches it in the background
// every `ttl` (the server's Cache-Control max-age is honoured within [ttl, ttl]).
func jwxKeySet(ctx context.Context, cache *jwk.Cache, url string, ttl time.Duration) (jwk.CachedSet, error) {
	err := cache.Register(ctx, url, jwk.WithMinInterval(ttl), jwk.WithMaxInterval(ttl))
	if err != nil {
		return nil, err
	}
	if _, err := cache.Refresh(ctx, url); err != nil { // fail fast at start-up
		return nil, err
	}
	return cache.CachedSet(url)
}

// jwxVerify checks the signature with the key the kid names (each JWK carries its alg,
// so the token's header cannot choose another), then exp/nbf/iat, issuer and audience.
func jwxVerify(token string, keys jwk.Set, issuer, audience string) (jwt.Token, error) {
	return jwt.Parse([]byte(token),
		jwt.WithKeySet(keys),
		jwt.WithValidate(true),
		jwt.WithRequiredClaim("exp"),
		jwt.WithIssuer(issuer),
		jwt.WithAudience(audience),
		jwt.WithAcceptableSkew(time.Second))
}

// snippet:end jwx
