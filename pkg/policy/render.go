package policy

import (
	"fmt"
	"strings"
)

// Phrases the renderer fills in for the fixed placeholders, per locale.
var phrases = map[string]map[string]string{
	"zh-CN": {
		"repay":   "官方App或银行转账",
		"options": "分期还款计划或短期延期",
		"credit":  "持续逾期可能会被报送征信系统，影响您的信用记录。",
		"legal":   "如仍未还款，我们可能依法通过诉讼等法律途径追偿，相关费用可能由您承担。",
		"optout":  "回复TD退订。",
		// {callback}: nothing that names a debt or a loan (a voicemail's).
		"callback": "您合同上的官方客服电话",
	},
	"en": {
		"repay":    "our official app or a bank transfer",
		"options":  "a repayment plan or a short deferral",
		"credit":   "Continued non-payment may be reported to the credit reference system and affect your credit record.",
		"legal":    "If the debt remains unpaid, we may take legal action to recover it, and you may be liable for the costs.",
		"optout":   "Reply STOP to stop messages like this one.",
		"callback": "the service number on your contract with us",
	},
}

// minorDigits are the ISO 4217 currencies whose minor unit is not 1/100.
var minorDigits = map[string]int{
	"BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0, "RWF": 0, "UGX": 0,
	"UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
	"BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
}

// FormatMoney renders minor units in major units: 120000 CNY -> "1200.00 CNY",
// 5000 JPY -> "5000 JPY".
func FormatMoney(m Money) string {
	digits, ok := minorDigits[m.Currency]
	if !ok {
		digits = 2
	}
	sign := ""
	v := m.Minor
	if v < 0 {
		sign, v = "-", -v
	}
	if digits == 0 {
		return fmt.Sprintf("%s%d %s", sign, v, m.Currency)
	}
	scale := int64(1)
	for range digits {
		scale *= 10
	}
	return fmt.Sprintf("%s%d.%0*d %s", sign, v/scale, digits, v%scale, m.Currency)
}

// Render fills a contact task's template for its channel and locale.
func (p Policy) Render(t ContactTask, lender string) (string, error) {
	tpl, ok := p.Templates[t.Template]
	if !ok {
		return "", fmt.Errorf("policy %s has no template %q", p.Version, t.Template)
	}
	locale := p.locale(t)
	text, ok := tpl.Texts[t.Channel][locale]
	if !ok {
		return "", fmt.Errorf("template %q has no %s text for locale %q", t.Template, t.Channel, locale)
	}
	return p.fill(text, t, locale, lender), nil
}

// RenderVoicemail fills a phone task's limited-content voicemail; ok is
// false when its template has none.
func (p Policy) RenderVoicemail(t ContactTask, lender string) (string, bool) {
	if t.Channel != ChannelPhone {
		return "", false
	}
	locale := p.locale(t)
	text, ok := p.Templates[t.Template].Voicemail[locale]
	if !ok {
		return "", false
	}
	return p.fill(text, t, locale, lender), true
}

func (p Policy) locale(t ContactTask) string {
	if t.Locale == "" {
		return p.DefaultLocale
	}
	return t.Locale
}

func (p Policy) fill(text string, t ContactTask, locale, lender string) string {
	ph := phrases[locale]
	if ph == nil {
		ph = phrases["en"]
	}
	if p.LenderName != "" {
		lender = p.LenderName
	}
	repay := ph["repay"]
	if w, ok := p.RepayWording[locale]; ok {
		repay = w
	}
	callback := ph["callback"]
	if w, ok := p.Callback[locale]; ok {
		callback = w
	}
	r := strings.NewReplacer(
		"{lender}", lender, "{amount}", FormatMoney(t.AmountDue), "{dpd}", fmt.Sprint(t.DPD),
		"{repay}", repay, "{options}", ph["options"], "{fees}", FormatMoney(t.Fees),
		"{credit}", ph["credit"], "{legal}", ph["legal"], "{ref}", t.Reference, "{optout}", ph["optout"], "{callback}", callback,
		"{reply_by}", t.ReplyBy,
	)
	return r.Replace(text)
}
