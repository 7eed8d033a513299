package main

// snippet:start jwx
import (
	"context"
	"time"

	"github.com/lestrrat-go/httprc/v3"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// jwxKeySet is a JWKS that a jwk.Cache refetches in the background every `ttl` (within
// [ttl, ttl] the server's Cache-Control max-age is honoured). It does not refetch when a
// token names an unknown kid: keep `ttl` well under prePublish.
func jwxKeySet(ctx context.Context, url string, ttl time.Duration) (jwk.Set, error) {
	cache, err := jwk.NewCache(ctx, httprc.NewClient())
	if err != nil {
		return nil, err
	}
	err = cache.Register(ctx, url, jwk.WithMinInterval(ttl), jwk.WithMaxInterval(ttl))
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
