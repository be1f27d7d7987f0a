package bus

import (
	"errors"
	"testing"
)

func TestPermanent(t *testing.T) {
	base := errors.New("bad payload")
	err := Permanent(base)
	if !IsPermanent(err) || !errors.Is(err, base) {
		t.Errorf("Permanent(%v): IsPermanent=%v, Is(base)=%v", base, IsPermanent(err), errors.Is(err, base))
	}
	if IsPermanent(base) || Permanent(nil) != nil {
		t.Error("plain errors must not be permanent; Permanent(nil) must be nil")
	}
}
