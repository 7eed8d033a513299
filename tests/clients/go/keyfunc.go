package main

// snippet:start keyfunc
import (
	"context"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// keyfuncFor refreshes the JWKS every `ttl` in the background and at once (at most once a
// second) when a token names a kid it does not know.
func keyfuncFor(ctx context.Context, url string, ttl time.Duration) (keyfunc.Keyfunc, error) {
	return keyfunc.NewDefaultOverrideCtx(ctx, []string{url}, keyfunc.Override{
		RefreshInterval:   ttl,
		RefreshUnknownKID: rate.NewLimiter(rate.Every(time.Second), 1),
	})
}

// keyfuncVerify pins the algorithm to the keyset's (never the token's choice) and requires
// exp, the issuer and the audience.
func keyfuncVerify(token string, k keyfunc.Keyfunc, alg, issuer, audience string) (*jwt.Token, error) {
	return jwt.Parse(token, k.Keyfunc,
		jwt.WithValidMethods([]string{alg}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuer(issuer),
		jwt.WithAudience(audience),
		jwt.WithLeeway(time.Second))
}

// snippet:end keyfunc
