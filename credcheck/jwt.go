package credcheck

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
	"strings"
	"time"
)

// maxJWT is the longest password JWTExpiry looks into; registry tokens are a few KiB.
const maxJWT = 16 << 10

// JWTExpiry returns the "exp" claim of password when it is a JWT (three base64url segments whose
// header and payload are JSON objects) that has one. The signature is not checked: the expiry is
// a hint for warnings, and the registry remains the judge of the token.
func JWTExpiry(password string) (time.Time, bool) {
	if len(password) > maxJWT || strings.Count(password, ".") != 2 {
		return time.Time{}, false
	}
	parts := strings.Split(password, ".")
	var header map[string]any
	if !decodeSegment(parts[0], &header) {
		return time.Time{}, false
	}
	var claims struct {
		Exp json.Number `json:"exp"`
	}
	if !decodeSegment(parts[1], &claims) || claims.Exp == "" {
		return time.Time{}, false
	}
	f, err := claims.Exp.Float64()
	// NumericDate is seconds since the epoch; refuse values time.Unix cannot hold.
	if err != nil || math.IsNaN(f) || f <= 0 || f > 1<<40 {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), true
}

func decodeSegment(s string, v any) bool {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return false
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	return d.Decode(v) == nil && bytes.HasPrefix(bytes.TrimSpace(b), []byte("{"))
}
