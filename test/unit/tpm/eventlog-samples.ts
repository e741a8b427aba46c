/**
 * Real event logs from public sources, for parsing tests. Their expected PCR values come from
 * the source *and* agree with tpm2-tools' `tpm2_eventlog` replay (checked by hand when added).
 */

/**
 * A SeaBIOS (legacy BIOS, QEMU) crypto-agile log, sha256 bank only, 17 events: EV_S_CRTM_VERSION,
 * option ROM scan, EV_SEPARATOR 0xFFFFFFFF on PCR 0-7, EV_IPL "MBR", EV_IPL_PARTITION_DATA.
 * Source: the "Get Evidence" response example (§2.2) in the public API documentation of a TPM
 * attestation service (endpoints under /global-trust-authority/), which lists the quoted PCR 0-7
 * values beside the log.
 */
export const SEABIOS_LOG_B64 =
  'AAAAAAMAAAAAAAAAAAAAAAAAAAAAAAAAAAAAACEAAABTcGVjIElEIEV2ZW50MDMAAAAAAAACAgIBAAAACwAgAAABAAAABgAA' +
  'AAEAAAALAKUQl5WfT2u4kWVrAbSwFzFjH47hjONtvzakrA+LlDtEHAAAAAEAAAAUAAAAP56Gs4+udkBZNHIbDv9fS+P5kjUC' +
  'AAAABQAAAAEAAAALAM6xuxF9FKN/B+I8luWAcp4/zBL3SZFbvcjtrfwg4hrPFQAAAFN0YXJ0IE9wdGlvbiBST00gU2NhbgIA' +
  'AAAGAAAAAQAAAAsAQsNfc9yoYaT2lBuIXP60QTs/V44tYaVIrSbo/STF/vIgAAAABwAAABgAAAAAAAAAh/vA7LHufU2MjIjH' +
  '2KL7Psj5nqUCAAAABgAAAAEAAAALAEhCcfsTwdRfjq1K1720aNnRAZTpRdNnOcSJR3WojkSDIAAAAAcAAAAYAAAAAAAAAKF3' +
  '/pUe76cFAoGMcB9F4l1zCtadAgAAAAYAAAABAAAACwDoVl9LfTKvNQynp1Xau/dtFxpE0UeBPIM0P3be9myybSAAAAAHAAAA' +
  'GAAAAAAAAABnDJzHm0hZlEcF7s5xDcMyGIt5tAQAAAAFAAAAAQAAAAsAehmlpW/SxKnJ29jHRTfzTQvEQqSlKMNvtEo8zYWN' +
  '8SsPAAAAQ2FsbGluZyBJTlQgMTloAAAAAAQAAAABAAAACwCtlRMbwLeZwLGvR3+xT88mpqn3YHnki/CQrLfoNnv9DgQAAAD/' +
  '////AQAAAAQAAAABAAAACwCtlRMbwLeZwLGvR3+xT88mpqn3YHnki/CQrLfoNnv9DgQAAAD/////AgAAAAQAAAABAAAACwCt' +
  'lRMbwLeZwLGvR3+xT88mpqn3YHnki/CQrLfoNnv9DgQAAAD/////AwAAAAQAAAABAAAACwCtlRMbwLeZwLGvR3+xT88mpqn3' +
  'YHnki/CQrLfoNnv9DgQAAAD/////BAAAAAQAAAABAAAACwCtlRMbwLeZwLGvR3+xT88mpqn3YHnki/CQrLfoNnv9DgQAAAD/' +
  '////BQAAAAQAAAABAAAACwCtlRMbwLeZwLGvR3+xT88mpqn3YHnki/CQrLfoNnv9DgQAAAD/////BgAAAAQAAAABAAAACwCt' +
  'lRMbwLeZwLGvR3+xT88mpqn3YHnki/CQrLfoNnv9DgQAAAD/////BwAAAAQAAAABAAAACwCtlRMbwLeZwLGvR3+xT88mpqn3' +
  'YHnki/CQrLfoNnv9DgQAAAD/////BAAAAAUAAAABAAAACwCTSuIFkroG1wKWsgvJKnBsFgwLvBFfJlCJS3Y3UhxlOhwAAABC' +
  'b290aW5nIEJDViBkZXZpY2UgODBoIChIREQpBAAAAA0AAAABAAAACwCfj8pNuhjuU9V1PHZiqzy9cTY3G9yjOqzfC6pJyRPl' +
  'LAMAAABNQlIFAAAADgAAAAEAAAALAANFsCy5TpPzbQ926+9+lu9QuPhi1KuuUrcygr0MMilREwAAAE1CUiBQQVJUSVRJT05f' +
  'VEFCTEU=';

export const SEABIOS_PCRS_SHA256: Record<number, string> = {
  0: 'e21b703ee69c77476bccb43ec0336a9a1b2914b378944f7b00a10214ca8fea93',
  1: 'a32bf8bf329907dc2b4839ff3c61b456a9856d12110f49d490df33baf189340e',
  2: 'a9d5bdf3b0b034a434ef3adde2d5cb0a7533803f97f8889f1174ab60bd4dcb70',
  3: 'e21b703ee69c77476bccb43ec0336a9a1b2914b378944f7b00a10214ca8fea93',
  4: 'fce7f1083082b16cfe2b085dd7858bb11a37c09b78e36c79e5a2fd529353c4e2',
  5: '8edde912699ceddddc7d9a3d7ee44a8b1b1910815692def6c9e637e2b939f941',
  6: 'e21b703ee69c77476bccb43ec0336a9a1b2914b378944f7b00a10214ca8fea93',
  7: 'e21b703ee69c77476bccb43ec0336a9a1b2914b378944f7b00a10214ca8fea93',
};

/**
 * A two-bank (sha1 + sha256) log of one EV_EVENT_TAG event in PCR 8 carrying a kernel command
 * line, uintnSize 1. Source: google/go-attestation attest/eventlog_test.go (TestAppendEvents,
 * Apache-2.0). PCR 8 values as tpm2_eventlog replays them.
 */
export const TWO_BANK_LOG_B64 =
  'AAAAAAMAAAAAAAAAAAAAAAAAAAAAAAAAAAAAACUAAABTcGVjIElEIEV2ZW50MDMAAAAAAAACAAECAAAABAAUAAsAIAAACAAA' +
  'AAYAAAACAAAABACX3UqVWDMNeg2Hkxyy6Q35wO4yBwsAVXbW4fKD8+xmKv75L4ecBpvSR4d6bz+A7z1prUcKPuMrAQAACAIS' +
  'pgJpbWFfaGFzaD1zaGEyNTYgYXBwYXJtb3I9MSBwY2k9bm9hZXIsbm9hdHMgcHJpbnRrLmRldmttc2c9b24gc2xhYl9ub21l' +
  'cmdlIGNvbnNvbGU9dHR5UzAsMTE1MjAwbjggY29uc29sZT10dHkwIGdsaW51eC1ib290LWltYWdlPTIwMjExMDI3LjAyLjAz' +
  'IHF1aWV0IHNwbGFzaCBwbHltb3V0aC5pZ25vcmUtc2VyaWFsLWNvbnNvbGVzIGxzbT1sb2NrZG93bix5YW1hLGxvYWRwaW4s' +
  'c2FmZXNldGlkLGludGVncml0eSxhcHBhcm1vcixzZWxpbnV4LHNtYWNrLHRvbW95byxicGYgcGFuaWM9MzAgaTkxNS5lbmFi' +
  'bGVfcHNyPTA=';

export const TWO_BANK_PCR8 = {
  sha1: '55a0b9ec8722e87cebcf0d3cf5292ad033f27d4f',
  sha256: 'd12c5e4a1143edc7156fce28c0cc1bb8210376bf9527166dde4979516ccfcdf7',
};
