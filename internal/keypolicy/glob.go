package keypolicy

import "strings"

// globMatch reports whether s matches an IAM-style pattern where '*' matches any run of characters
// and '?' exactly one. Actions are matched with fold=true (IAM action names are case-insensitive);
// StringLike and ARNs are case-sensitive.
//
// It backtracks only to the last '*', so it runs in O(len(pattern)*len(s)) even on hostile input
// (the fuzz target feeds it arbitrary policies).
func globMatch(pattern, s string, fold bool) bool {
	if fold {
		pattern, s = strings.ToLower(pattern), strings.ToLower(s)
	}
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
