package codec

import (
	"github.com/opendunning/dunning/pkg/policy"
	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"
)

// Each closed domain enum is mapped to its protobuf enum by name, value by
// value, never by a numeric cast: the two orders are free to differ, and
// TestEnumsAgree fails when a value exists on one side only.

type enum[D, P comparable] struct {
	toProto map[D]P
	toModel map[P]D
}

func newEnum[D, P comparable](m map[D]P) enum[D, P] {
	e := enum[D, P]{toProto: m, toModel: make(map[P]D, len(m))}
	for d, p := range m {
		e.toModel[p] = d
	}
	return e
}

var (
	stages = newEnum(map[policy.Stage]dunningv1.Stage{
		policy.StageNone:                dunningv1.Stage_STAGE_UNSPECIFIED,
		policy.StageOverdueConfirmation: dunningv1.Stage_STAGE_OVERDUE_CONFIRMATION,
		policy.StageFirstContact:        dunningv1.Stage_STAGE_FIRST_CONTACT,
		policy.StageEscalation:          dunningv1.Stage_STAGE_ESCALATION,
		policy.StageHandoff:             dunningv1.Stage_STAGE_THIRD_PARTY_HANDOFF,
		policy.StageLegal:               dunningv1.Stage_STAGE_LEGAL_REFERRAL,
		policy.StageRelease:             dunningv1.Stage_STAGE_CONTACT_RELEASE,
	})
	tiers = newEnum(map[policy.Tier]dunningv1.Tier{
		policy.TierNone:   dunningv1.Tier_TIER_UNSPECIFIED,
		policy.TierLight:  dunningv1.Tier_TIER_LIGHT,
		policy.TierMedium: dunningv1.Tier_TIER_MEDIUM,
		policy.TierSevere: dunningv1.Tier_TIER_SEVERE,
	})
	channels = newEnum(map[policy.Channel]dunningv1.Channel{
		policy.ChannelNone:    dunningv1.Channel_CHANNEL_UNSPECIFIED,
		policy.ChannelSMS:     dunningv1.Channel_CHANNEL_SMS,
		policy.ChannelPhone:   dunningv1.Channel_CHANNEL_PHONE,
		policy.ChannelEmail:   dunningv1.Channel_CHANNEL_EMAIL,
		policy.ChannelAppPush: dunningv1.Channel_CHANNEL_APP_PUSH,
		policy.ChannelLetter:  dunningv1.Channel_CHANNEL_LETTER,
	})
	tones = newEnum(map[policy.Tone]dunningv1.Tone{
		policy.ToneNone:    dunningv1.Tone_TONE_UNSPECIFIED,
		policy.ToneGentle:  dunningv1.Tone_TONE_GENTLE,
		policy.ToneSerious: dunningv1.Tone_TONE_SERIOUS,
		policy.ToneFirm:    dunningv1.Tone_TONE_FIRM,
	})
	closeReasons = newEnum(map[policy.CloseReason]dunningv1.CloseReason{
		policy.CloseNone:    dunningv1.CloseReason_CLOSE_REASON_UNSPECIFIED,
		policy.CloseCured:   dunningv1.CloseReason_CLOSE_REASON_CURED,
		policy.CloseSettled: dunningv1.CloseReason_CLOSE_REASON_SETTLED,
	})
	holdKinds = newEnum(map[policy.HoldKind]dunningv1.HoldKind{
		policy.HoldNone:           dunningv1.HoldKind_HOLD_KIND_UNSPECIFIED,
		policy.HoldDispute:        dunningv1.HoldKind_HOLD_KIND_DISPUTE,
		policy.HoldHardship:       dunningv1.HoldKind_HOLD_KIND_HARDSHIP,
		policy.HoldComplaint:      dunningv1.HoldKind_HOLD_KIND_COMPLAINT,
		policy.HoldCeaseAll:       dunningv1.HoldKind_HOLD_KIND_CEASE_ALL,
		policy.HoldBreathingSpace: dunningv1.HoldKind_HOLD_KIND_BREATHING_SPACE,
		policy.HoldDeceased:       dunningv1.HoldKind_HOLD_KIND_DECEASED,
		policy.HoldBankruptcy:     dunningv1.HoldKind_HOLD_KIND_BANKRUPTCY,
	})
	legalStatuses = newEnum(map[policy.LegalStatus]dunningv1.LegalStatus{
		policy.LegalStatusNone: dunningv1.LegalStatus_LEGAL_STATUS_UNSPECIFIED,
		policy.LegalFiled:      dunningv1.LegalStatus_LEGAL_STATUS_FILED,
		policy.LegalJudgment:   dunningv1.LegalStatus_LEGAL_STATUS_JUDGMENT,
		policy.LegalSettled:    dunningv1.LegalStatus_LEGAL_STATUS_SETTLED,
		policy.LegalWithdrawn:  dunningv1.LegalStatus_LEGAL_STATUS_WITHDRAWN,
	})
	outcomes = newEnum(map[policy.Outcome]dunningv1.Outcome{
		policy.OutcomeNone:           dunningv1.Outcome_OUTCOME_UNSPECIFIED,
		policy.OutcomeSent:           dunningv1.Outcome_OUTCOME_SENT,
		policy.OutcomeDelivered:      dunningv1.Outcome_OUTCOME_DELIVERED,
		policy.OutcomeFailed:         dunningv1.Outcome_OUTCOME_FAILED,
		policy.OutcomeCallConnected:  dunningv1.Outcome_OUTCOME_CALL_CONNECTED,
		policy.OutcomeCallRightParty: dunningv1.Outcome_OUTCOME_CALL_RIGHT_PARTY,
		policy.OutcomeCallWrongParty: dunningv1.Outcome_OUTCOME_CALL_WRONG_PARTY,
		policy.OutcomeCallNoAnswer:   dunningv1.Outcome_OUTCOME_CALL_NO_ANSWER,
	})
)

// StageToProto maps a stage; an unmapped value becomes STAGE_UNSPECIFIED.
func StageToProto(s policy.Stage) dunningv1.Stage { return stages.toProto[s] }

// StageFromProto maps a stage; an unknown value becomes StageNone.
func StageFromProto(s dunningv1.Stage) policy.Stage { return stages.toModel[s] }

// TierToProto maps a tier.
func TierToProto(t policy.Tier) dunningv1.Tier { return tiers.toProto[t] }

// TierFromProto maps a tier.
func TierFromProto(t dunningv1.Tier) policy.Tier { return tiers.toModel[t] }

// ChannelToProto maps a channel.
func ChannelToProto(c policy.Channel) dunningv1.Channel { return channels.toProto[c] }

// ChannelFromProto maps a channel.
func ChannelFromProto(c dunningv1.Channel) policy.Channel { return channels.toModel[c] }

// ToneToProto maps a tone.
func ToneToProto(t policy.Tone) dunningv1.Tone { return tones.toProto[t] }

// ToneFromProto maps a tone.
func ToneFromProto(t dunningv1.Tone) policy.Tone { return tones.toModel[t] }

// CloseReasonToProto maps a close reason.
func CloseReasonToProto(r policy.CloseReason) dunningv1.CloseReason { return closeReasons.toProto[r] }

// CloseReasonFromProto maps a close reason.
func CloseReasonFromProto(r dunningv1.CloseReason) policy.CloseReason { return closeReasons.toModel[r] }

// OutcomeToProto maps a contact outcome.
func OutcomeToProto(o policy.Outcome) dunningv1.Outcome { return outcomes.toProto[o] }

// OutcomeFromProto maps a contact outcome; ok is false for a value the
// domain does not know (validation rejects it).
func OutcomeFromProto(o dunningv1.Outcome) policy.Outcome { return outcomes.toModel[o] }

// KnownOutcome reports whether a protobuf outcome is one the domain knows
// and is not the unspecified zero.
func KnownOutcome(o dunningv1.Outcome) bool {
	d, ok := outcomes.toModel[o]
	return ok && d != policy.OutcomeNone
}

// HoldKindToProto maps a hold kind.
func HoldKindToProto(k policy.HoldKind) dunningv1.HoldKind { return holdKinds.toProto[k] }

// LegalStatusToProto maps a legal referral's status.
func LegalStatusToProto(s policy.LegalStatus) dunningv1.LegalStatus { return legalStatuses.toProto[s] }

// LegalStatusFromProto maps a legal referral's status; an unknown value
// becomes LegalStatusNone (validation rejects it).
func LegalStatusFromProto(s dunningv1.LegalStatus) policy.LegalStatus {
	return legalStatuses.toModel[s]
}

// HoldKindFromProto maps a hold kind; an unknown value becomes HoldNone.
func HoldKindFromProto(k dunningv1.HoldKind) policy.HoldKind { return holdKinds.toModel[k] }
