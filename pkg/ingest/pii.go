package ingest

import (
	"regexp"
	"time"
)

// Identifiers (tenant, loan, installment, payment, product, contact IDs) and
// the lender's contact reference are opaque tokens: they become NATS subject
// tokens, log fields and metric-free labels of the timeline, so they must
// never carry personal data. The alphabet of an identifier
// ([A-Za-z0-9_-]) already rules out e-mail addresses, "+" country prefixes
// and spaces; a contact reference may also hold '.', ':' and '/' (as in
// "crm:contact/77") but never '@', '+' or spaces. Digit strings are
// legitimate loan and payment numbers, however long, except two shapes
// that identify a person:
//
//   - a PRC resident identity number: 17 digits and a check character
//     (digit or X) whose ISO 7064 MOD 11-2 checksum holds and whose digits
//     7-14 are a date of birth between 1900 and 2100;
//   - a PRC mobile number with its country prefix: 86 or 0086, then 1,
//     a digit 3-9 and nine more digits.
//
// A random 18-digit number is rejected as a resident ID about 4 times in
// 100,000 (it must both hold a valid birth date and pass the checksum).

var (
	residentID   = regexp.MustCompile(`^[1-9][0-9]{16}[0-9Xx]$`)
	prefixMobile = regexp.MustCompile(`^(00)?861[3-9][0-9]{9}$`)
	refPattern   = regexp.MustCompile(`^[A-Za-z0-9._:/-]{1,128}$`)
)

// personalShape names the kind of personal data v looks like, or "".
func personalShape(v string) string {
	switch {
	case prefixMobile.MatchString(v):
		return "a mobile number with its country prefix"
	case isResidentID(v):
		return "a resident identity number"
	}
	return ""
}

// isResidentID reports whether v is a checksum-valid 18-character PRC
// resident identity number with a plausible date of birth.
func isResidentID(v string) bool {
	if !residentID.MatchString(v) {
		return false
	}
	birth, err := time.Parse("20060102", v[6:14])
	if err != nil || birth.Year() < 1900 || birth.Year() > 2100 {
		return false
	}
	weights := [17]int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}
	sum := 0
	for i, w := range weights {
		sum += int(v[i]-'0') * w
	}
	check := "10X98765432"[sum%11]
	last := v[17]
	if last == 'x' {
		last = 'X'
	}
	return last == check
}
