package policy

import "testing"

// Acceptance 7 (contact rules): the language check holds both ways, in en
// and zh-CN. Threats, their variants, telling the employer and public
// shaming are refused; ordinary wording that contains a banned word, or a
// harmless compound around a banned Chinese phrase, is not.
func TestLanguageCheckBothWays(t *testing.T) {
	lc := NewLanguageCheck([]string{"final demand", "最后通牒"})
	refused := []string{
		"We know where you live.",
		"We know where your children go to school.",
		"If you do not pay we will tell your employer.",
		"We'll contact your boss tomorrow.",
		"We are going to inform your colleagues about this debt.",
		"Your employer will find out.",
		"You will be arrested.",
		"You'll be detained by the police.",
		"The police will come to your door.",
		"We will put you behind bars.",
		"A criminal case has been opened against you.",
		"We will post your name on social media.",
		"Name and shame: everyone will know.",
		"Pay now, or else.",
		"Pay now or\telse.",
		"This is a FINAL   DEMAND.",
		"如不还款我们将上门催收。",
		"我们将通知你的单位。",
		"否则我们会告诉你老板。",
		"我们会联系你的领导。",
		"你将被刑事拘留。",
		"警察将抓捕你。",
		"我们会把你的欠款曝光。",
		"我们将挂到网上让大家都知道。",
		"否则将发到朋友圈。",
		"这是最后通牒。",
	}
	for _, text := range refused {
		if lc.Find(text) == "" {
			t.Errorf("refused wording passed: %q", text)
		}
	}
	allowed := []string{
		"You can pay in the app or elsewhere.",
		"Police your spending with our budgeting tool.",
		"Our office is open 9-5; we are happy to talk.",
		"A cheater's guide to saving",
		"If you have already paid, please disregard this message.",
		"Telling your employer is never something we do.",
		"您可申请上门取件服务寄回设备。",
		"如需上门服务，请致电客服。",
		"您好，您的借款已逾期3天，请通过官方App还款。",
	}
	for _, text := range allowed {
		if got := lc.Find(text); got != "" {
			t.Errorf("ordinary wording refused: %q (matched %q)", text, got)
		}
	}
	// The check is on words, not on intent: "or else" as words is refused
	// even where it is harmless; a lender rewords it.
	if got := lc.Find("Pay in the app, or else by bank transfer."); got != "or else" {
		t.Errorf("\"or else\" as words: matched %q", got)
	}
}
