package pn532

import (
	"encoding/hex"
	"fmt"
	"strings"
)

// Target is a tag found by InListPassiveTarget at 106 kbps type A.
type Target struct {
	SensRes uint16 // SENS_RES (ATQA), as the PN532 sends it, MSB first
	SelRes  byte   // SEL_RES (SAK)
	UID     []byte // NFCID1: 4, 7 or 10 bytes
}

// UIDHex is the UID in upper-case hex.
func (t Target) UIDHex() string { return strings.ToUpper(hex.EncodeToString(t.UID)) }

// ParseInList decodes the data of an InListPassiveTarget response (TFI D5,
// 0x4B, NbTg, then per target Tg SENS_RES(2) SEL_RES NFCIDLength NFCID1
// [ATSLength ATS], UM0701 §7.3.5). It returns the first target, or
// found=false when NbTg is 0.
func ParseInList(data []byte) (t Target, found bool, err error) {
	if len(data) < 3 || data[0] != TFIPN532 || data[1] != CmdInListPassiveTarget+1 {
		return t, false, fmt.Errorf("not an InListPassiveTarget response: % X", data)
	}
	if data[2] == 0 {
		return t, false, nil
	}
	if data[2] > 2 {
		return t, false, fmt.Errorf("NbTg %d (at most 2)", data[2])
	}
	b := data[3:]
	if len(b) < 5 {
		return t, false, fmt.Errorf("target data too short: % X", b)
	}
	n := int(b[4])
	if n != 4 && n != 7 && n != 10 {
		return t, false, fmt.Errorf("NFCID1 length %d (want 4, 7 or 10)", n)
	}
	if len(b) < 5+n {
		return t, false, fmt.Errorf("NFCID1 cut short: % X", b)
	}
	t.SensRes = uint16(b[1])<<8 | uint16(b[2])
	t.SelRes = b[3]
	t.UID = append([]byte(nil), b[5:5+n]...)
	return t, true, nil
}

// InListResponse builds the response data a PN532 sends for one target (used
// by the simulator and tests).
func InListResponse(t *Target) []byte {
	if t == nil {
		return []byte{TFIPN532, CmdInListPassiveTarget + 1, 0x00}
	}
	out := []byte{TFIPN532, CmdInListPassiveTarget + 1, 0x01, 0x01, byte(t.SensRes >> 8), byte(t.SensRes), t.SelRes, byte(len(t.UID))}
	return append(out, t.UID...)
}
