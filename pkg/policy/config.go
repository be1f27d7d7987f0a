package policy

import (
	"slices"
)

// This file holds the parts of a Policy that a lender configures beyond the
// ladder's thresholds: tiers as DPD ranges, stage entry conditions, the
// cadence of contacts within each stage, and templates. The policy file
// loader (package policyfile) fills them; Default ships the tiers of
// docs/domain.md.

// TierRange is a tier's DPD range; To 0 means open-ended.
type TierRange struct {
	Tier     Tier
	From, To int
}

// EntryCondition is a stage's entry condition: all of its non-zero parts must hold.
type EntryCondition struct {
	DPD                int
	MinOverdue         int64 // minor units
	MissedInstallments int
}

// CadenceStep is one planned contact of a stage: on DPD, over Channels,
// with Template.
type CadenceStep struct {
	Stage    Stage
	DPD      int
	Channels []Channel
	Template string
}

// Template holds a message per channel and locale, for one tier.
type Template struct {
	Tier  Tier
	Texts map[Channel]map[string]string // channel -> locale -> text
	// Voicemail is the phone text's limited-content variant, per locale:
	// what a voice vendor leaves when the call is not answered (required
	// under us-regf, 12 CFR 1006.2(j)).
	Voicemail map[string]string
}

// VoicemailPlaceholders are all a limited-content voicemail may carry
// (12 CFR 1006.2(j)): the business's name, the number to call back, how to
// opt out. Nothing that says there is a debt, and no verification code
// (not among the items the rule allows).
var VoicemailPlaceholders = []string{"lender", "callback", "optout"}

// VoicemailRequired is what every limited-content voicemail must carry:
// the number to call back.
var VoicemailRequired = []string{"callback"}

// Placeholders a template may use; the renderer fills them.
var Placeholders = []string{"amount", "dpd", "repay", "options", "fees", "credit", "legal", "ref", "lender", "optout", "callback", "reply_by"}

// RequiredPlaceholders are what every template of a tier must mention:
// amount, DPD, how to repay and the verification reference always; medium
// adds fees and the credit-record consequence; severe adds legal liability.
func RequiredPlaceholders(t Tier) []string {
	base := []string{"amount", "dpd", "repay", "ref"}
	switch t {
	case TierMedium:
		return append(base, "fees", "credit")
	case TierSevere:
		return append(base, "fees", "legal")
	}
	return base
}

// ParseChannel maps a configuration name to a Channel.
func ParseChannel(s string) (Channel, bool) {
	i := slices.Index(channelNames[:], s)
	if i <= 0 {
		return ChannelNone, false
	}
	return Channel(i), true
}

// ParseTier maps a configuration name to a Tier.
func ParseTier(s string) (Tier, bool) {
	i := slices.Index(tierNames[:], s)
	if i <= 0 {
		return TierNone, false
	}
	return Tier(i), true
}

// ParseStage maps a configuration name to a Stage.
func ParseStage(s string) (Stage, bool) {
	i := slices.Index(stageNames[:], s)
	if i <= 0 || Stage(i) > StageLegal { // the release gate is not a rung to configure
		return StageNone, false
	}
	return Stage(i), true
}

// ChannelNames lists the configurable channels.
func ChannelNames() []string { return slices.Clone(channelNames[1:]) }
