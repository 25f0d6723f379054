// Injected into every page of the built site by tests/test_docs_layout.py. Once the page has
// loaded and its fonts are ready, it records (1) content wider than the box that holds it,
// which the reader sees clipped behind a scroll bar or cut off, and (2) every resource the
// page loaded, so the test can refuse any that comes from outside the site. The report is
// written into the DOM, which Chromium's --dump-dom prints.
(function () {
  const SLACK = 1; // px of rounding between scrollWidth and clientWidth
  function describe(el) {
    const text = (el.getAttribute("alt") || el.textContent || "").replace(/\s+/g, " ").trim();
    return el.tagName.toLowerCase() + (el.className && typeof el.className === "string" ? "." + el.className.split(" ")[0] : "") + ": " + text.slice(0, 90);
  }
  function report() {
    const article = document.querySelector("article.md-content__inner") || document.body;
    const column = article.getBoundingClientRect();
    const clipped = [];
    // boxes that scroll or clip their content: code, display formulas, table wrappers
    for (const el of article.querySelectorAll("pre > code, .math-display, .md-typeset__scrollwrap, .md-typeset__table, table")) {
      if (el.scrollWidth > el.clientWidth + SLACK) {
        clipped.push({what: describe(el), content: el.scrollWidth, box: el.clientWidth});
      }
    }
    // anything else that sticks out of the column (images, formulas in text, admonitions)
    for (const el of article.querySelectorAll("img, math, figure, .admonition, details, p")) {
      const box = el.getBoundingClientRect();
      if (box.width > 0 && box.right > column.right + SLACK) {
        clipped.push({what: describe(el), content: Math.round(box.right - column.left), box: Math.round(column.width)});
      }
    }
    const resources = performance.getEntriesByType("resource").map((r) => r.name);
    for (const el of document.querySelectorAll("script[src], link[href], img[src], iframe[src]")) {
      resources.push(el.src || el.href);
    }
    const out = document.createElement("pre");
    out.id = "snrkit-layout-report";
    out.textContent = JSON.stringify({column: Math.round(column.width), clipped: clipped, resources: resources});
    document.body.appendChild(out);
  }
  window.addEventListener("load", () => document.fonts.ready.then(() => setTimeout(report, 200)));
})();
