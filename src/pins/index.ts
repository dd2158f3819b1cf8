/**
 * `tidewire/pins`: the blob files kept beside a database (PinStore), the
 * columns that reference them and their collection (Pins), and the job that
 * fetches missing pins from peers (downloadPins, DOWNLOAD_PINS).
 *
 * Contract: loads no backend package on import.
 */
export {
  DOWNLOAD_PINS,
  type DownloadPinsPayload,
  type DownloadReport,
  downloadPins,
  downloadPinsHandler,
  type PinSource,
} from "./download.js";
export { isPinHash, PinMismatchError, PinNotFoundError, PinTooLargeError } from "./errors.js";
export { DEFAULT_MAX_PIN_BYTES, type PinInfo, PinStore, type PinStoreOptions } from "./pin-store.js";
export { type CollectResult, DEFAULT_GRACE_MS, Pins } from "./pins.js";
export type { PinColumn } from "./references.js";
