package rtc

import (
	"strings"

	"github.com/pion/sdp/v3"
)

// CannotSendVideo says why an offer can never send its answerer a picture
// ("" when it can): it needs a video m-line that is not rejected (port 0)
// or inactive, that the offerer sends on (sendonly, or sendrecv, the
// default), with VP8. A WHIP server checks it before the offer takes its
// one publisher's place.
func CannotSendVideo(offer string) string {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(offer); err != nil {
		return "bad SDP offer: " + err.Error()
	}
	sessionDir := "sendrecv"
	for _, a := range d.Attributes {
		if isDirection(a.Key) {
			sessionDir = a.Key
		}
	}
	video, sending := false, false
	for _, m := range d.MediaDescriptions {
		if m.MediaName.Media != "video" {
			continue
		}
		video = true
		dir := sessionDir
		vp8 := false
		for _, a := range m.Attributes {
			switch {
			case isDirection(a.Key):
				dir = a.Key
			case a.Key == "rtpmap" && strings.Contains(strings.ToUpper(a.Value), "VP8/90000"):
				vp8 = true
			}
		}
		if m.MediaName.Port.Value != 0 && (dir == "sendonly" || dir == "sendrecv") {
			sending = true
			if vp8 {
				return ""
			}
		}
	}
	switch {
	case !video:
		return "the offer has no video m-line: this server takes one VP8 video track that the publisher sends"
	case !sending:
		return "the offer's video is not sent by the publisher (recvonly, inactive or rejected): a WHIP offer must send its video (sendonly)"
	}
	return "the offer does not send VP8 video (this server takes one VP8 video track)"
}

func isDirection(k string) bool {
	return k == "sendonly" || k == "recvonly" || k == "sendrecv" || k == "inactive"
}
