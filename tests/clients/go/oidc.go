package main

// snippet:start oidc
import (
	"context"

	"github.com/coreos/go-oidc/v3/oidc"
)

// oidcVerifier discovers the JWKS from the issuer's /.well-known/openid-configuration.
// go-oidc keeps the keys it fetched until a token names a kid it does not know (or fails
// to verify with them): then it refetches the set once.
func oidcVerifier(ctx context.Context, issuer, audience, alg string) (*oidc.IDTokenVerifier, error) {
	provider, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		return nil, err
	}
	return provider.Verifier(&oidc.Config{
		ClientID:             audience, // the aud the token must carry
		SupportedSigningAlgs: []string{alg},
	}), nil
}

// snippet:end oidc
