// The page's words in two languages, English and Simplified Chinese: one table holds every
// string the page shows or reads aloud, so a sentence is written (and translated) in one place.
//
// The language is the reader's choice (the switch at the foot of the sidebar, kept in this
// browser's localStorage), else the browser's: the first of navigator.languages this page
// speaks. Chinese written in simplified characters (zh, zh-CN, zh-SG, zh-Hans…) gets Chinese;
// traditional Chinese (zh-TW, zh-HK, zh-MO, zh-Hant) has no table of its own and is passed
// over, to a later language of the list or English.
//
// The language is settled when this module is first evaluated, before any other module builds
// an element: modules may keep translated strings in constants. Changing it reloads the page
// (the conversation is in the URL, a running answer is followed again after a reload, and the
// draft in the message box is carried over), which redraws every string at once rather than
// leaving those a view built earlier in the old language.
//
// index.html's own text is English and is replaced at start from its data-i18n attributes:
// data-i18n (the text), data-i18n-label (aria-label), data-i18n-title (title) and
// data-i18n-placeholder (placeholder), each naming a key of the table.
//
// Strings are whole sentences with {name} placeholders, never glued from pieces, and avoid
// plural forms ("At most {count} images", "{seconds} s"), so each language words them its way.

const LANGUAGE_ITEM = "typewriter.language";
const DRAFT_ITEM = "typewriter.draft"; // the message box's text across a change of language

/** The languages of the switch, each named in itself. */
export const LANGUAGES = { en: "English", "zh-CN": "中文" };

export const STRINGS = {
  en: {
    // index.html
    "page.skip": "Skip to the message box",
    "sidebar.label": "Conversations",
    "sidebar.close": "Close conversations",
    "chat.new": "New chat",
    "search.label": "Search conversations",
    "list.label": "Conversation list",
    "list.empty": "No conversations yet.",
    "list.none": "No conversation holds “{query}”.",
    "list.more": "Load more",
    "language.label": "Language",
    "title.label": "Conversation title",
    "common.save": "Save",
    "common.cancel": "Cancel",
    "common.close": "Close",
    "common.ok": "OK",
    "header.rename": "Rename conversation",
    "header.clear": "Clear history",
    "header.delete": "Delete conversation",
    "log.label": "Chat",
    "welcome.title": "Ask anything",
    "welcome.text":
      "The answer types itself as it is written. You can stop it, reload the page or open it in another tab: it carries on where it is.",
    "log.jump": "Jump to latest",
    "notice.retry": "Retry",
    "notice.dismiss": "Dismiss",
    "composer.attachInput": "Image to attach",
    "composer.message": "Message",
    "composer.placeholder": "Message typewriter…",
    "composer.send": "Send",
    "composer.stop": "Stop",
    "composer.assistant": "Assistant",
    "composer.attachTitle": "Attach an image (or paste or drop one in the message box)",
    "composer.attach": "Attach image",
    "composer.hint": "Enter sends, Shift+Enter adds a line, Ctrl+/ lists the shortcuts.",
    "signin.title": "Sign in",
    "signin.help": "Ask whoever runs this typewriter for an API key:",
    "signin.help2": "prints one, once. It is kept in this browser until you sign out.",
    "signin.key": "API key",
    "signin.show": "Show",
    "keys.title": "Keyboard shortcuts",
    "keys.or": "or",
    "keys.send": "Send the message",
    "keys.newline": "New line in the message",
    "keys.stop": "Stop the answer being written",
    "keys.focus": "Go to the message box",
    "keys.help": "This list",
    // answer.js, turn.js
    "answer.heading": "typewriter said:",
    "answer.thinking": "Thinking",
    "answer.writing": "Writing…",
    "answer.previous": "Previous answer",
    "answer.next": "Next answer",
    "answer.count": "Answer {n} of {total}",
    "answer.copy": "Copy",
    "answer.good": "Good answer",
    "answer.bad": "Bad answer",
    "answer.regenerate": "Regenerate",
    "answer.comment": "Comment (optional)",
    "answer.sendFeedback": "Send feedback",
    "answer.continuedBy": "Continued from here by {model} ({upstream})",
    "question.heading": "You said:",
    "question.previous": "Previous version",
    "question.next": "Next version",
    "question.count": "Version {n} of {total}",
    "question.copy": "Copy message",
    "question.edit": "Edit message",
    "question.editBox": "Edit your message",
    "question.copied": "Copied your message.",
    "question.copyFailed": "Could not copy your message.",
    "image.attached": "Attached image",
    "image.failed": "Attached image (could not be loaded)",
    // endings.js
    "ending.interrupted": "The server stopped this answer.",
    "ending.unavailable": "The model is not reachable right now.",
    "ending.upstreamError": "The model failed while answering.",
    "ending.timeout": "The model took too long to answer.",
    "ending.tooLarge": "The model sent more than the server passes on at once.",
    "ending.incomplete": "The model's answer broke off before its end.",
    "ending.broker": "The server lost track of this answer.",
    "ending.internal": "Something went wrong on the server.",
    "ending.failed": "The answer failed.",
    "ending.retry": "Regenerate to try again.",
    "ending.withRetry": "{said} {retry}",
    "ending.stopped": "Stopped.",
    "ending.stoppedEmpty": "Stopped before any text was written.",
    "ending.length": "Cut short: the answer reached its length limit.",
    "ending.filter": "Stopped by the model's content filter.",
    "ending.tool": "The model asked for a tool, which this page cannot run.",
    "ending.other": "Ended: {reason}.",
    // notice.js, following.js, api.js
    "notice.network": "typewriter cannot be reached. Check your connection.",
    "notice.networkShort": "typewriter cannot be reached: check your connection.",
    "notice.inProgress": "An answer is still being written in this conversation. Wait for it, or stop it.",
    "notice.tooMany": "Too many requests right now.",
    "notice.server": "The server could not do that ({status}): {message}",
    "notice.wait": "{text} Wait {seconds} s, then retry.",
    "notice.retryIn": "Retry ({seconds} s)",
    "notice.offline": "You are offline. The answer carries on when the connection is back.",
    "notice.noConversation": "That conversation does not exist (any more).",
    "follow.complete": "Answer complete.",
    "follow.reconnecting": "Connection lost. Reconnecting…",
    "follow.lost": "Lost the connection to this answer.",
    "follow.lostBecause": "Lost the connection to this answer. {reason}",
    // composer.js
    "composer.busy": "An answer is being written: wait for it, or stop it.",
    // attachments.js
    "attach.types": "Only PNG, JPEG, GIF and WebP images can be attached.",
    "attach.tooMany": "At most {count} images go with one message.",
    "attach.image": "image",
    "attach.remove": "Remove {name}",
    "attach.dropped": "The images were removed: this assistant does not accept images.",
    // header.js, export.js
    "header.renamed": "Conversation renamed.",
    "header.deleteTitle": "Delete this conversation?",
    "header.deleteText": "“{title}” and all its messages will be deleted. This cannot be undone.",
    "header.deleteOk": "Delete",
    "header.deleted": "Conversation deleted.",
    "header.clearTitle": "Clear this conversation's history?",
    "header.clearText": "Its messages are deleted and the assistant forgets them; the conversation stays.",
    "header.cleared": "History cleared.",
    "export.button": "Export as Markdown",
    "export.done": "Conversation exported as Markdown.",
    "export.file": "conversation",
    // log.js, markdown.js, feedback.js
    "code.language": "code",
    "code.copy": "Copy code",
    "code.copied": "Copied",
    "code.copiedSaid": "Copied the code.",
    "code.copyFailed": "Could not copy the code.",
    "feedback.copied": "Copied the answer.",
    "feedback.copyFailed": "Could not copy the answer.",
    "feedback.thanks": "Thanks for the feedback. You can add a comment.",
    "feedback.sent": "Feedback sent. Thank you.",
    // dates.js
    "date.today": "Today",
    "date.yesterday": "Yesterday",
    "date.week": "Previous 7 days",
    "date.older": "Older",
    // signin.js
    "signin.empty": "Enter an API key.",
    "signin.refused": "That key was refused: check it, or ask for a new one.",
    "signin.storage": "This browser cannot keep the key (storage is blocked).",
    "signin.needed": "This typewriter needs an API key.",
    "signin.revoked": "The API key this browser kept was refused (revoked, or mistyped).",
    "signin.out": "Sign out",
    "signin.outTitle": "Forget this browser's API key (to sign in with another)",
  },
  "zh-CN": {
    "page.skip": "跳到消息输入框",
    "sidebar.label": "对话",
    "sidebar.close": "关闭对话列表",
    "chat.new": "新对话",
    "search.label": "搜索对话",
    "list.label": "对话列表",
    "list.empty": "还没有对话。",
    "list.none": "没有包含“{query}”的对话。",
    "list.more": "加载更多",
    "language.label": "语言",
    "title.label": "对话标题",
    "common.save": "保存",
    "common.cancel": "取消",
    "common.close": "关闭",
    "common.ok": "确定",
    "header.rename": "重命名对话",
    "header.clear": "清空聊天记录",
    "header.delete": "删除对话",
    "log.label": "聊天",
    "welcome.title": "有什么可以帮你的？",
    "welcome.text": "回答边写边显示。你可以随时停止，也可以刷新页面或在其他标签页中打开：它会从中断处继续。",
    "log.jump": "回到最新",
    "notice.retry": "重试",
    "notice.dismiss": "关闭",
    "composer.attachInput": "要添加的图片",
    "composer.message": "消息",
    "composer.placeholder": "给 typewriter 发送消息…",
    "composer.send": "发送",
    "composer.stop": "停止",
    "composer.assistant": "助手",
    "composer.attachTitle": "添加图片（也可以粘贴或拖放到消息框中）",
    "composer.attach": "添加图片",
    "composer.hint": "Enter 发送，Shift+Enter 换行，Ctrl+/ 查看快捷键。",
    "signin.title": "登录",
    "signin.help": "请向此 typewriter 的管理员索取 API 密钥：",
    "signin.help2": "会生成一个密钥，只显示一次。密钥保存在此浏览器中，直到你退出登录。",
    "signin.key": "API 密钥",
    "signin.show": "显示",
    "keys.title": "键盘快捷键",
    "keys.or": "或",
    "keys.send": "发送消息",
    "keys.newline": "在消息中换行",
    "keys.stop": "停止正在生成的回答",
    "keys.focus": "转到消息输入框",
    "keys.help": "显示此列表",
    "answer.heading": "typewriter 回答：",
    "answer.thinking": "思考过程",
    "answer.writing": "正在生成…",
    "answer.previous": "上一个回答",
    "answer.next": "下一个回答",
    "answer.count": "第 {n} 个回答，共 {total} 个",
    "answer.copy": "复制",
    "answer.good": "喜欢",
    "answer.bad": "不喜欢",
    "answer.regenerate": "重新生成",
    "answer.comment": "补充说明（可选）",
    "answer.sendFeedback": "提交反馈",
    "answer.continuedBy": "此处起由 {model}（{upstream}）续写",
    "question.heading": "你说：",
    "question.previous": "上一个版本",
    "question.next": "下一个版本",
    "question.count": "第 {n} 个版本，共 {total} 个",
    "question.copy": "复制消息",
    "question.edit": "编辑消息",
    "question.editBox": "编辑你的消息",
    "question.copied": "已复制你的消息。",
    "question.copyFailed": "无法复制你的消息。",
    "image.attached": "附加的图片",
    "image.failed": "附加的图片（无法加载）",
    "ending.interrupted": "服务器中断了此回答。",
    "ending.unavailable": "暂时无法连接到模型。",
    "ending.upstreamError": "模型在回答时出错。",
    "ending.timeout": "模型响应超时。",
    "ending.tooLarge": "模型一次发送的内容超过了服务器的转发上限。",
    "ending.incomplete": "模型的回答在结束前中断了。",
    "ending.broker": "服务器丢失了此回答的进度。",
    "ending.internal": "服务器出错了。",
    "ending.failed": "回答失败。",
    "ending.retry": "可点击“重新生成”再试一次。",
    "ending.withRetry": "{said}{retry}",
    "ending.stopped": "已停止。",
    "ending.stoppedEmpty": "已停止，尚未生成任何内容。",
    "ending.length": "回答已达到长度上限，内容被截断。",
    "ending.filter": "已被模型的内容过滤器拦截。",
    "ending.tool": "模型请求调用工具，但此页面无法运行工具。",
    "ending.other": "已结束：{reason}。",
    "notice.network": "无法连接到 typewriter，请检查网络连接。",
    "notice.networkShort": "无法连接到 typewriter，请检查网络连接。",
    "notice.inProgress": "此对话中仍有回答正在生成。请等待它完成，或停止它。",
    "notice.tooMany": "当前请求过多。",
    "notice.server": "服务器无法完成此操作（{status}）：{message}",
    "notice.wait": "{text}请等待 {seconds} 秒后重试。",
    "notice.retryIn": "重试（{seconds} 秒）",
    "notice.offline": "你已离线。连接恢复后，回答会继续生成。",
    "notice.noConversation": "该对话不存在（或已被删除）。",
    "follow.complete": "回答已完成。",
    "follow.reconnecting": "连接已断开，正在重新连接…",
    "follow.lost": "与此回答的连接已断开。",
    "follow.lostBecause": "与此回答的连接已断开。{reason}",
    "composer.busy": "回答正在生成中：请等待它完成，或停止它。",
    "attach.types": "只能添加 PNG、JPEG、GIF 和 WebP 格式的图片。",
    "attach.tooMany": "每条消息最多添加 {count} 张图片。",
    "attach.image": "图片",
    "attach.remove": "移除 {name}",
    "attach.dropped": "图片已移除：此助手不支持图片。",
    "header.renamed": "对话已重命名。",
    "header.deleteTitle": "删除此对话？",
    "header.deleteText": "“{title}”及其所有消息都将被删除，且无法恢复。",
    "header.deleteOk": "删除",
    "header.deleted": "对话已删除。",
    "header.clearTitle": "清空此对话的聊天记录？",
    "header.clearText": "其中的消息将被删除，助手也会忘记它们；对话本身会保留。",
    "header.cleared": "聊天记录已清空。",
    "export.button": "导出为 Markdown",
    "export.done": "对话已导出为 Markdown。",
    "export.file": "对话",
    "code.language": "代码",
    "code.copy": "复制代码",
    "code.copied": "已复制",
    "code.copiedSaid": "已复制代码。",
    "code.copyFailed": "无法复制代码。",
    "feedback.copied": "已复制回答。",
    "feedback.copyFailed": "无法复制回答。",
    "feedback.thanks": "感谢你的反馈。你还可以补充说明。",
    "feedback.sent": "反馈已提交，谢谢。",
    "date.today": "今天",
    "date.yesterday": "昨天",
    "date.week": "过去 7 天",
    "date.older": "更早",
    "signin.empty": "请输入 API 密钥。",
    "signin.refused": "该密钥被拒绝：请检查，或索取新的密钥。",
    "signin.storage": "此浏览器无法保存密钥（存储被阻止）。",
    "signin.needed": "此 typewriter 需要 API 密钥。",
    "signin.revoked": "此浏览器保存的 API 密钥被拒绝（已被吊销或输入有误）。",
    "signin.out": "退出登录",
    "signin.outTitle": "清除此浏览器保存的 API 密钥（以便用其他密钥登录）",
  },
};

/** The language for a stored choice and the browser's languages: "en" or "zh-CN". */
export function chooseLanguage(stored, browserLanguages) {
  if (stored && Object.hasOwn(STRINGS, stored)) return stored;
  for (const tag of browserLanguages || []) {
    const lower = String(tag).toLowerCase();
    if (lower === "en" || lower.startsWith("en-")) return "en";
    if (lower !== "zh" && !lower.startsWith("zh-")) continue;
    if (/^zh-hans(-|$)/.test(lower)) return "zh-CN";
    if (/^zh-(hant|tw|hk|mo)(-|$)/.test(lower)) continue; // traditional: no table of its own
    return "zh-CN";
  }
  return "en";
}

function storage(kind) {
  try {
    return kind === "local" ? window.localStorage : window.sessionStorage;
  } catch {
    return null; // storage blocked: nothing is remembered
  }
}

function stored() {
  try {
    return storage("local")?.getItem(LANGUAGE_ITEM) ?? null;
  } catch {
    return null;
  }
}

const browserLanguages = navigator.languages?.length ? navigator.languages : [navigator.language];

/** The page's language: "en" or "zh-CN". */
export const language = chooseLanguage(stored(), browserLanguages);

const table = STRINGS[language];

/** The string `key` in the page's language, with each {name} replaced by `params[name]`. */
export function t(key, params = {}) {
  const text = table[key] ?? STRINGS.en[key];
  if (text === undefined) {
    console.warn(`typewriter: no string ${key}`);
    return key;
  }
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
}

const ATTRIBUTES = [
  ["i18nLabel", "aria-label"],
  ["i18nTitle", "title"],
  ["i18nPlaceholder", "placeholder"],
];

/** Put the page's language into index.html's marked elements under `root`. */
export function translate(root = document) {
  for (const element of root.querySelectorAll("[data-i18n]")) {
    // an element decorated with an icon (icons.js) keeps its text in a .label span
    const label = element.querySelector(":scope > .label");
    (label || element).textContent = t(element.dataset.i18n);
  }
  for (const [data, attribute] of ATTRIBUTES) {
    const selector = `[data-${data.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}]`;
    for (const element of root.querySelectorAll(selector)) {
      element.setAttribute(attribute, t(element.dataset[data]));
    }
  }
}

/** Remember `choice` and reload in it, carrying the message box's draft over. */
function switchTo(choice) {
  if (choice === language) return;
  try {
    storage("local").setItem(LANGUAGE_ITEM, choice);
    const draft = document.getElementById("message")?.value;
    if (draft) storage("session")?.setItem(DRAFT_ITEM, draft);
  } catch {
    // storage blocked: nothing could carry the choice over a reload
    document.getElementById("language").value = language;
    return;
  }
  location.reload();
}

function restoreDraft() {
  const box = document.getElementById("message");
  try {
    const draft = storage("session")?.getItem(DRAFT_ITEM);
    if (!draft) return;
    storage("session").removeItem(DRAFT_ITEM);
    if (box && !box.value) box.value = draft;
  } catch {
    // storage blocked: no draft was kept
  }
}

function wireSwitch() {
  const select = document.getElementById("language");
  if (!select) return;
  select.value = language;
  select.addEventListener("change", () => switchTo(select.value));
}

document.documentElement.lang = language;
translate();
wireSwitch();
restoreDraft();
