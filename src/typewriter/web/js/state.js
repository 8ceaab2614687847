// The page's state, and the one place that says it changed.
//
// `state` is a frozen snapshot: modules read it freely and change it only through the
// functions below, which replace the snapshot and call changed(). changed() batches every
// change made in one task into a single call of each listener registered with onChange()
// (app.js registers the views that draw their controls from the state), so a burst of changes
// draws once and no caller has to remember to refresh anything. The answers inside the turns
// are objects of their own (answer.js); they call changed() when their status changes.
//
// A "view" is what the page shows: one conversation, or a new chat. Each view has an
// AbortController; opening another view aborts it, so the fetches made for the old view are
// cancelled and work that finishes late sees `signal.aborted` rather than a stale counter.

const freeze = Object.freeze;

export let state = freeze({
  conversation: null, // { id, title, assistant } of the open conversation; null: a new chat
  turns: freeze([]), // the Turns (answer.js) on screen, oldest first
  loaded: "", // the signature of the messages last loaded (conversation.js)
  renaming: false, // the title is being edited
  list: freeze({ items: freeze([]), cursor: null }), // the conversations in the sidebar
  assistants: freeze([]),
  stick: true, // auto-scroll: true while the reader is at the bottom of the log
});

function update(changes, { notify = true } = {}) {
  state = freeze({ ...state, ...changes });
  if (notify) changed();
}

// -- telling the views --------------------------------------------------------------------

const listeners = [];
let scheduled = false;

/** Call `listener()` after every batch of changes, in the order the listeners were added. */
export function onChange(listener) {
  listeners.push(listener);
}

/** Something the controls are drawn from changed: draw them once this task is done. */
export function changed() {
  if (scheduled) return;
  scheduled = true;
  queueMicrotask(() => {
    scheduled = false;
    for (const listener of listeners) listener();
  });
}

// -- the view -------------------------------------------------------------------------------

let view = new AbortController();

/** The signal of the view on screen: aborted as soon as another view is opened. */
export function viewSignal() {
  return view.signal;
}

/** Another view is opened: abort what the old one still had under way. */
export function newView() {
  view.abort();
  view = new AbortController();
  return view.signal;
}

// -- changes ----------------------------------------------------------------------------------

export function setConversation(conversation) {
  update({ conversation: conversation && freeze({ ...conversation }) });
}

/** The open conversation got a new title (renamed here, or seen renamed in the list). */
export function retitle(id, title) {
  if (state.conversation?.id !== id || state.conversation.title === title) return;
  update({ conversation: freeze({ ...state.conversation, title }) });
}

export function addTurn(turn) {
  update({ turns: freeze([...state.turns, turn]) });
}

export function dropTurn(turn) {
  update({ turns: freeze(state.turns.filter((t) => t !== turn)) });
}

export function clearTurns() {
  update({ turns: freeze([]) });
}

export function setLoaded(signature) {
  update({ loaded: signature }, { notify: false });
}

export function setRenaming(renaming) {
  update({ renaming });
}

export function setList(items, cursor) {
  update({ list: freeze({ items: freeze([...items]), cursor }) });
}

export function setAssistants(assistants) {
  update({ assistants: freeze([...assistants]) });
}

/** Follow the end of the log or not; only the log reads it, on its next paint. */
export function setStick(stick) {
  if (stick !== state.stick) update({ stick }, { notify: false });
}

// -- read from the state --------------------------------------------------------------------

/** The answer of the open conversation that is being written, if any. */
export function liveAnswer() {
  for (let i = state.turns.length - 1; i >= 0; i -= 1) {
    for (const answer of state.turns[i].answers) if (answer.live) return answer;
  }
  return null;
}

export function busy() {
  return liveAnswer() !== null;
}
