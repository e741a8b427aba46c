/** Context management (Part 3 §28). */
import { AUTH, PLAIN, command } from '../command.js';
import { TPM_CC } from '../constants.js';
import { u32 } from '../structures/codec.js';
import { tpmsContext } from '../structures/context.js';

/** Part 3 §28.2 TPM2_ContextSave. */
export const ContextSave = command(TPM_CC.ContextSave, {
  handles: { saveHandle: PLAIN },
  response: { context: tpmsContext },
});

/** Part 3 §28.3 TPM2_ContextLoad. */
export const ContextLoad = command(TPM_CC.ContextLoad, {
  params: { context: tpmsContext },
  responseHandles: ['loadedHandle'],
});

/** Part 3 §28.4 TPM2_FlushContext: the handle travels as a *parameter*. */
export const FlushContext = command(TPM_CC.FlushContext, { params: { flushHandle: u32 } });

/**
 * Part 3 §28.5 TPM2_EvictControl: persist a transient object at `persistentHandle`, or (given
 * a persistent object) remove it.
 */
export const EvictControl = command(TPM_CC.EvictControl, {
  handles: { auth: AUTH, objectHandle: PLAIN },
  params: { persistentHandle: u32 },
});
