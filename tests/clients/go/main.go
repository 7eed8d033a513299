// Command verifier verifies JWTs with one real Go library, driven over stdin/stdout.
//
// One JSON request a line on stdin ({"jwks", "issuer", "audience", "alg", "token"}), one
// JSON answer a line on stdout ({"ok": true, "kid": ...} or {"ok": false, "error": ...}).
// The library is chosen by the first argument (jwx, keyfunc, oidc); the second is the JWKS
// cache lifetime in seconds, the setting the conformance suite keeps well under prePublish.
// Each library keeps one cache per JWKS URL for the life of the process, as a service does.
package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

type request struct {
	JWKS     string `json:"jwks"`
	Issuer   string `json:"issuer"`
	Audience string `json:"audience"`
	Alg      string `json:"alg"`
	Token    string `json:"token"`
}

type answer struct {
	OK    bool   `json:"ok"`
	Kid   string `json:"kid,omitempty"`
	Error string `json:"error,omitempty"`
}

// verifier checks one token; it returns the token's kid when the token is valid.
type verifier func(ctx context.Context, r request) (string, error)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: verifier jwx|keyfunc|oidc CACHE_SECONDS")
		os.Exit(2)
	}
	seconds, err := strconv.ParseFloat(os.Args[2], 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad CACHE_SECONDS:", err)
		os.Exit(2)
	}
	ttl := time.Duration(seconds * float64(time.Second))
	ctx := context.Background()
	var verify verifier
	switch os.Args[1] {
	case "jwx":
		verify = newJwx(ctx, ttl)
	case "keyfunc":
		verify = newKeyfunc(ctx, ttl)
	case "oidc":
		verify = newOidc(ctx)
	default:
		fmt.Fprintln(os.Stderr, "unknown library", os.Args[1])
		os.Exit(2)
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var r request
		var a answer
		if err := json.Unmarshal(in.Bytes(), &r); err != nil {
			a.Error = "bad request: " + err.Error()
		} else if kid, err := verify(ctx, r); err != nil {
			a.Error = err.Error()
		} else {
			a.OK, a.Kid = true, kid
		}
		if err := out.Encode(a); err != nil {
			os.Exit(1)
		}
	}
}

// tokenKid is the kid of a compact JWS's protected header ("" when there is none).
func tokenKid(token string) string {
	header, _, _ := strings.Cut(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(header)
	if err != nil {
		return ""
	}
	var fields struct {
		Kid string `json:"kid"`
	}
	_ = json.Unmarshal(raw, &fields)
	return fields.Kid
}
