package policy

import (
	"fmt"
	"regexp"
)

// Stage is a rung of the dunning ladder. The zero value is no stage (no open case).
type Stage int

// Stages in ladder order.
const (
	StageNone Stage = iota
	StageOverdueConfirmation
	StageFirstContact
	StageEscalation
	StageHandoff
	StageLegal
	// StageRelease is not a rung: it is the gate every contact passes
	// before it leaves (contact rules), with a timer step of its own for the
	// contacts it holds. A case is never "in" it.
	StageRelease
)

var stageNames = [...]string{"none", "overdue_confirmation", "first_contact", "escalation", "third_party_handoff", "legal_referral", "contact_release"}

func (s Stage) String() string { return enumName(stageNames[:], int(s), "stage") }

// Tier is the overdue severity by DPD.
type Tier int

// Tiers; TierNone means not overdue.
const (
	TierNone Tier = iota
	TierLight
	TierMedium
	TierSevere
)

var tierNames = [...]string{"none", "light", "medium", "severe"}

func (t Tier) String() string { return enumName(tierNames[:], int(t), "tier") }

// Channel of an outbound contact.
type Channel int

// Channels.
const (
	ChannelNone Channel = iota
	ChannelSMS
	ChannelPhone
	ChannelEmail
	ChannelAppPush
	ChannelLetter
)

var channelNames = [...]string{"none", "sms", "phone", "email", "app_push", "letter"}

func (c Channel) String() string { return enumName(channelNames[:], int(c), "channel") }

// Tone of a contact. There is no threatening tone to choose.
type Tone int

// Tones.
const (
	ToneNone Tone = iota
	ToneGentle
	ToneSerious
	ToneFirm
)

var toneNames = [...]string{"none", "gentle", "serious", "firm"}

func (t Tone) String() string { return enumName(toneNames[:], int(t), "tone") }

// CloseReason says why a case ended.
type CloseReason int

// Close reasons.
const (
	CloseNone CloseReason = iota
	CloseCured
	CloseSettled
)

var closeNames = [...]string{"none", "cured", "settled"}

func (r CloseReason) String() string { return enumName(closeNames[:], int(r), "close_reason") }

// enumName is the configuration name of a closed enum's value.
func enumName(names []string, i int, kind string) string {
	if i < 0 || i >= len(names) {
		return fmt.Sprintf("%s(%d)", kind, i)
	}
	return names[i]
}

// Money is an amount in minor units of a currency.
type Money struct {
	Currency string
	Minor    int64
}

func (m Money) String() string { return FormatMoney(m) }

var (
	idPattern       = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	currencyPattern = regexp.MustCompile(`^[A-Z]{3}$`)
)

// ValidID reports whether s can be a tenant, loan, installment or payment
// identifier. Identifiers become NATS subject tokens, so the alphabet is closed.
func ValidID(s string) bool { return idPattern.MatchString(s) }

// ValidCurrency reports whether s looks like an ISO 4217 code.
func ValidCurrency(s string) bool { return currencyPattern.MatchString(s) }
