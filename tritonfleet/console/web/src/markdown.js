// Model output is untrusted text. Markdown becomes HTML through marked with raw HTML and images turned
// back into text (a <script> or <img onerror> in an answer is shown, never parsed), then DOMPurify with a
// short list of tags and attributes allowed; links open elsewhere without a referrer.
import DOMPurify from "dompurify";
import { Marked } from "marked";

const escape = (text) =>
  text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

const marked = new Marked({
  gfm: true,
  breaks: true,
  renderer: {
    html: ({ text }) => escape(text),
    image: ({ raw }) => escape(raw),
  },
});

const ALLOWED_TAGS = [
  "a", "p", "br", "hr", "em", "strong", "del", "code", "pre", "blockquote", "ul", "ol", "li",
  "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td",
];

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  }
});

export function toHTML(text) {
  return DOMPurify.sanitize(marked.parse(text), {
    ALLOWED_TAGS,
    ALLOWED_ATTR: ["href", "title", "start", "align"],
    ALLOWED_URI_REGEXP: /^(?:https?:|mailto:|#)/i,
  });
}

export function render(el, text) {
  el.innerHTML = toHTML(text);
}
