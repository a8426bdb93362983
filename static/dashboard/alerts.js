// The alerts page: acknowledge in place.
import { enhanceAckForms } from "./ack.js";
import { onEvent } from "./live.js";

enhanceAckForms();
onEvent(() => {});  // keeps the live indicator honest on this page too
