package policy

import (
	"regexp"
	"strings"
	"unicode"
)

// The language check: collectors never threaten, abuse, shame or make
// false legal claims, in any template. It must hold both ways: wording
// that threatens is refused in its variants, and ordinary wording that
// happens to contain a banned word is not.
//
// English is matched on word boundaries, so "or else" does not catch "pay
// in the app or elsewhere". A phrase may list alternatives in parentheses,
// "(tell|contact) your (employer|boss)", and runs of spaces match any
// whitespace. Chinese has no word boundaries: a phrase is matched as a
// substring, except inside a compound the phrase lists as harmless ("上门"
// threatens a visit; "上门取件" is a courier's pickup).

// bannedEN are English phrases, lower case, matched on word boundaries.
var bannedEN = []string{
	`we (will|'ll|are going to) (come|go|turn up|show up) (to|at) your (home|house|door|work|office|workplace)`,
	`we know where (you|your family|your (wife|husband|children|kids|parents)) (live|lives|work|works|go to school)`,
	`your family will (suffer|pay|be sorry)`,
	`(you will|you'll|you are going to) be (arrested|detained|jailed|imprisoned|prosecuted)`,
	`(arrest|detain|jail|imprison) you`, `arrest warrant`, `warrant for your arrest`,
	`police (will|are going to|shall) (come|visit|arrest|call|be)`, `(go|sent|send you) to (jail|prison)`,
	`put you (in|behind) (jail|prison|bars)`, `criminal (charges|case|complaint) (will be|has been|have been) (filed|opened|brought)`,
	`(we will|we'll|we are going to) (tell|contact|call|inform|notify|email|visit|write to) your (employer|boss|manager|colleagues|coworkers|co-workers|workplace|hr|friends|neighbours|neighbors|relatives|contacts)`,
	`(your|the) (employer|boss|manager|colleagues|coworkers|neighbours|neighbors) will (know|find out|be told|hear)`,
	`(expose|shame|humiliate) you`, `name and shame`, `wall of shame`, `(publish|post|share) your (name|photo|picture|debt|details)`,
	`(on|to) social media`, `everyone will know`,
	`you will regret`, `or else`, `last chance before we`, `idiot`, `deadbeat`, `scum`, `loser`, `liar`, `thief`, `cheat`,
	`seize your (property|house|home|car) (today|now|tomorrow)`, `take your (children|kids)`,
}

// bannedZH are Chinese phrases, with the compounds that contain them and
// are harmless.
var bannedZH = []struct {
	phrase string
	allow  []string
}{
	{"上门", []string{"上门取件", "上门服务", "上门安装", "上门维修", "上门送货"}},
	{"找到你家", nil}, {"找你家人", nil}, {"通知你的家人", nil}, {"告诉你的家人", nil},
	{"通知你的单位", nil}, {"通知你单位", nil}, {"通知你的同事", nil}, {"告诉你的老板", nil}, {"告诉你老板", nil},
	{"联系你的领导", nil}, {"找你领导", nil}, {"找你老板", nil}, {"联系你公司", nil}, {"打到你公司", nil},
	{"通讯录", nil}, {"曝光", nil}, {"公开你的", nil}, {"挂到网上", nil}, {"发到朋友圈", nil}, {"让大家都知道", nil},
	{"让你好看", nil}, {"后果自负", nil}, {"坐牢", nil}, {"抓你", nil}, {"抓捕", nil}, {"逮捕", nil}, {"拘留你", nil},
	{"刑事拘留", nil}, {"刑拘", nil}, {"判刑", nil}, {"警察上门", nil}, {"公安机关将", nil}, {"立即起诉你全家", nil},
	{"老赖", nil}, {"骗子", nil}, {"不要脸", nil}, {"去死", nil}, {"收拾你", nil}, {"弄死", nil},
}

// LanguageCheck finds banned wording in a text.
type LanguageCheck struct {
	words []wordPhrase
	subs  []subPhrase
}

type wordPhrase struct {
	phrase string // as listed
	re     *regexp.Regexp
}

type subPhrase struct {
	phrase string
	allow  []string
}

// NewLanguageCheck is the built-in lists plus a lender's own phrases
// (language_check.extra_banned): a phrase with Han characters is matched
// as a substring, any other on word boundaries.
func NewLanguageCheck(extra []string) LanguageCheck {
	var lc LanguageCheck
	for _, p := range bannedEN {
		lc.words = append(lc.words, wordPhrase{p, wordPattern(p)})
	}
	for _, b := range bannedZH {
		lc.subs = append(lc.subs, subPhrase{b.phrase, b.allow})
	}
	for _, p := range extra {
		switch {
		case strings.TrimSpace(p) == "":
		case strings.IndexFunc(p, func(r rune) bool { return unicode.Is(unicode.Han, r) }) >= 0:
			lc.subs = append(lc.subs, subPhrase{phrase: p})
		default:
			lc.words = append(lc.words, wordPhrase{p, wordPattern(regexp.QuoteMeta(strings.ToLower(p)))})
		}
	}
	return lc
}

// wordPattern compiles a phrase to match on word boundaries, any
// whitespace between its words, case-insensitively.
func wordPattern(p string) *regexp.Regexp {
	body := regexp.MustCompile(`\s+`).ReplaceAllString(strings.TrimSpace(p), `\s+`)
	return regexp.MustCompile(`(?i)(?:^|[^\pL\pN_])(` + body + `)(?:$|[^\pL\pN_])`)
}

// Find returns the banned wording text contains, as it stands in the
// text, or "".
func (lc LanguageCheck) Find(text string) string {
	for _, w := range lc.words {
		if m := w.re.FindStringSubmatch(text); m != nil {
			return m[1]
		}
	}
	for _, s := range lc.subs {
		if containsOutside(text, s.phrase, s.allow) {
			return s.phrase
		}
	}
	return ""
}

// containsOutside reports whether phrase occurs in text other than inside
// one of the allowed compounds.
func containsOutside(text, phrase string, allow []string) bool {
	for from := 0; ; {
		i := strings.Index(text[from:], phrase)
		if i < 0 {
			return false
		}
		at := from + i
		if !insideAllowed(text, at, len(phrase), allow) {
			return true
		}
		from = at + len(phrase)
	}
}

func insideAllowed(text string, at, n int, allow []string) bool {
	for _, a := range allow {
		for from := 0; ; {
			i := strings.Index(text[from:], a)
			if i < 0 {
				break
			}
			start := from + i
			if start <= at && at+n <= start+len(a) {
				return true
			}
			from = start + 1
		}
	}
	return false
}
