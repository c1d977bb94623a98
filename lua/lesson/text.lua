-- lesson/text.lua — renders lesson text for a terminal: headings, paragraphs wrapped to
-- the width (CJK characters count two columns and may break anywhere, except before
-- closing punctuation), `code` spans, fenced ```lua blocks with highlighting, and two
-- code blocks side by side when both fit (else one above the other). Colour only when
-- style.color is true (the driver turns it off for NO_COLOR and for pipes).
--
-- Runs in the driver's trusted lesson state (lesson/engine.lua); pure string work.
local M = {}

local SGR = {
  heading = "\27[1;4m", code = "\27[36m", keyword = "\27[35m", string = "\27[32m",
  comment = "\27[2m", number = "\27[33m", pass = "\27[32m", fail = "\27[31m",
  dim = "\27[2m", bold = "\27[1m", reset = "\27[0m",
}

-- Wraps s in the SGR of `what` when colour is on.
function M.paint(style, what, s)
  if not style.color or s == "" then return s end
  return SGR[what] .. s .. SGR.reset
end

-- Whether code point c takes two columns (East Asian Wide and Fullwidth ranges).
local function is_wide(c)
  return (c >= 0x1100 and c <= 0x115F) or (c >= 0x2E80 and c <= 0x303E) or
         (c >= 0x3041 and c <= 0x33FF) or (c >= 0x3400 and c <= 0x4DBF) or
         (c >= 0x4E00 and c <= 0x9FFF) or (c >= 0xA000 and c <= 0xA4CF) or
         (c >= 0xAC00 and c <= 0xD7A3) or (c >= 0xF900 and c <= 0xFAFF) or
         (c >= 0xFE30 and c <= 0xFE4F) or (c >= 0xFF00 and c <= 0xFF60) or
         (c >= 0xFFE0 and c <= 0xFFE6) or (c >= 0x20000 and c <= 0x3FFFD)
end
M.is_wide = is_wide

-- Columns s takes on a terminal (SGR sequences take none; bytes that are not UTF-8 one).
function M.width(s)
  s = s:gsub("\27%[[%d;]*m", "")
  local w = 0
  local ok = pcall(function()
    for _, c in utf8.codes(s) do w = w + (is_wide(c) and 2 or 1) end
  end)
  if not ok then return #s end
  return w
end

-- Closing punctuation that must not start a line (so it sticks to what precedes it).
local NO_BREAK_BEFORE = {}
for _, p in ipairs({"，", "。", "、", "；", "：", "！", "？", "）", "」", "』", "》", "…",
                    ",", ".", ";", ":", "!", "?", ")"}) do
  NO_BREAK_BEFORE[p] = true
end

-- Splits a paragraph into tokens {text=, width=, space=} where `space` says whether a
-- space separates it from the previous token; `code` spans stay whole; each wide
-- character is a token of its own (lines may break between them).
local function tokens(style, para)
  local out = {}
  local pending_space = false
  local function push(text, plain)
    local w = M.width(plain or text)
    if NO_BREAK_BEFORE[plain or text] and #out > 0 and not pending_space then
      local last = out[#out]
      last.text, last.width = last.text .. text, last.width + w
    else
      out[#out + 1] = {text = text, width = w, space = pending_space and #out > 0}
    end
    pending_space = false
  end
  local i, n = 1, #para
  while i <= n do
    local ch = para:sub(i, i)
    if ch:match("%s") then
      pending_space = true
      i = i + 1
    elseif ch == "`" then
      local close = para:find("`", i + 1, true)
      if not close then close = n + 1 end
      local code = para:sub(i + 1, close - 1)
      if style.color then
        push(M.paint(style, "code", code), code)
      else -- without colour the backticks are what sets code apart
        push("`" .. code .. "`")
      end
      i = close + 1
    else
      local ok, c = pcall(utf8.codepoint, para, i)
      if ok and c >= 0x80 and is_wide(c) then
        local len = #utf8.char(c)
        push(para:sub(i, i + len - 1))
        i = i + len
      else -- a run of narrow, non-space characters (a word), up to a wide one or a `
        local j = i
        while j <= n do
          local b = para:byte(j)
          if b == 96 or para:sub(j, j):match("%s") then break end
          if b >= 0xC0 then
            local ok, cp = pcall(utf8.codepoint, para, j)
            if ok and is_wide(cp) then break end
            j = j + (ok and #utf8.char(cp) or 1)
          else
            j = j + 1
          end
        end
        push(para:sub(i, j - 1))
        i = j
      end
    end
  end
  return out
end

-- Wraps one paragraph to `width` columns after an indent; returns its lines.
function M.wrap(style, para, width, indent)
  indent = indent or ""
  local lines, line, col = {}, indent, M.width(indent)
  local start = col
  for _, t in ipairs(tokens(style, para)) do
    local gap = (t.space and col > start) and 1 or 0
    if col > start and col + gap + t.width > width then
      lines[#lines + 1] = line
      line, col = indent, start
      gap = 0
    end
    line = line .. (gap == 1 and " " or "") .. t.text
    col = col + gap + t.width
  end
  if col > start then lines[#lines + 1] = line end
  return lines
end

local KEYWORDS = {}
for w in ("and break do else elseif end false for function goto if in local nil not or " ..
          "repeat return then true until while import def class from as with None True False")
         :gmatch("%S+") do
  KEYWORDS[w] = true
end

-- One line of Lua (or Python) with keywords, strings, numbers and comments coloured.
function M.highlight(style, line)
  if not style.color then return line end
  local out, i, n = {}, 1, #line
  while i <= n do
    local rest = line:sub(i)
    local comment = rest:match("^%-%-.*") or rest:match("^#.*")
    local str = rest:match('^"[^"]*"?') or rest:match("^'[^']*'?")
    local num = rest:match("^%d+%.?%d*[eE]?%-?%d*")
    local word = rest:match("^[%a_][%w_]*")
    if comment then
      out[#out + 1] = M.paint(style, "comment", comment)
      break
    elseif str then
      out[#out + 1] = M.paint(style, "string", str)
      i = i + #str
    elseif word then
      out[#out + 1] = KEYWORDS[word] and M.paint(style, "keyword", word) or word
      i = i + #word
    elseif num and num ~= "" then
      out[#out + 1] = M.paint(style, "number", num)
      i = i + #num
    else
      out[#out + 1] = line:sub(i, i)
      i = i + 1
    end
  end
  return table.concat(out)
end

-- The lines of a code block, indented, highlighted.
function M.code_lines(style, code, indent)
  local lines = {}
  for l in (code:gsub("\n+$", "") .. "\n"):gmatch("(.-)\n") do
    lines[#lines + 1] = (indent or "    ") .. M.highlight(style, l)
  end
  return lines
end

-- Renders Markdown-ish text: blank-line paragraphs, "# heading" lines, "- " list items,
-- fenced ``` blocks. Returns one string ending in a newline.
function M.render(style, text, width)
  local out = {}
  local function add(lines) for _, l in ipairs(lines) do out[#out + 1] = l end end
  text = text:gsub("\r", "")
  local para = {}
  local function flush()
    if #para == 0 then return end
    local p = para[1]
    for i = 2, #para do -- no space where a line break falls between CJK characters
      local last = para[i - 1]:match("[\xC0-\xF7][\x80-\xBF]*$")
      local first = para[i]:match("^[\xC0-\xF7][\x80-\xBF]*")
      local wide = function(ch)
        local ok, cp = pcall(utf8.codepoint, ch or "")
        return ok and cp and is_wide(cp)
      end
      p = p .. ((wide(last) or wide(first)) and "" or " ") .. para[i]
    end
    local bullet = p:match("^%- ")
    if bullet then
      local lines = M.wrap(style, p:sub(3), width, "  ")
      lines[1] = "- " .. lines[1]:sub(3)
      add(lines)
    else
      add(M.wrap(style, p, width))
    end
    out[#out + 1] = ""
    para = {}
  end
  local in_code, code = false, {}
  for line in (text .. "\n"):gmatch("(.-)\n") do
    if line:match("^%s*```") then
      if in_code then
        add(M.code_lines(style, table.concat(code, "\n")))
        out[#out + 1] = ""
        code, in_code = {}, false
      else
        flush()
        in_code = true
      end
    elseif in_code then
      code[#code + 1] = line
    elseif line:match("^%s*$") then
      flush()
    elseif line:match("^#+ ") then
      flush()
      out[#out + 1] = M.paint(style, "heading", line:gsub("^#+ ", ""))
      out[#out + 1] = ""
    elseif line:match("^%s*%- ") then
      flush()
      para[1] = line:gsub("^%s*", "")
    else
      para[#para + 1] = line:gsub("^%s+", "")
    end
  end
  if in_code then add(M.code_lines(style, table.concat(code, "\n"))) end
  flush()
  while out[#out] == "" do out[#out] = nil end
  return table.concat(out, "\n") .. "\n"
end

-- Pads s with spaces to w columns.
local function pad(s, w)
  return s .. string.rep(" ", math.max(0, w - M.width(s)))
end

-- Two labelled code blocks side by side ("Lua │ PyTorch") when both fit in `width`, else
-- one above the other. Returns one string ending in a newline.
function M.side_by_side(style, left_title, left, right_title, right, width)
  local function plain_lines(code)
    local t = {}
    for l in (code:gsub("\n+$", "") .. "\n"):gmatch("(.-)\n") do t[#t + 1] = l end
    return t
  end
  local L, R = plain_lines(left), plain_lines(right)
  local lw, rw = M.width(left_title), M.width(right_title)
  for _, l in ipairs(L) do lw = math.max(lw, M.width(l)) end
  for _, l in ipairs(R) do rw = math.max(rw, M.width(l)) end
  local out = {}
  if 2 + lw + 3 + rw <= width then
    out[1] = "  " .. pad(M.paint(style, "bold", left_title), lw) .. " │ " ..
             M.paint(style, "bold", right_title)
    for i = 1, math.max(#L, #R) do
      local l, r = L[i] or "", R[i] or ""
      out[#out + 1] = "  " .. pad(M.highlight(style, l), lw) .. " │ " .. M.highlight(style, r)
    end
  else
    out[1] = "  " .. M.paint(style, "bold", left_title)
    for _, l in ipairs(L) do out[#out + 1] = "    " .. M.highlight(style, l) end
    out[#out + 1] = "  " .. M.paint(style, "bold", right_title)
    for _, l in ipairs(R) do out[#out + 1] = "    " .. M.highlight(style, l) end
  end
  return table.concat(out, "\n") .. "\n"
end

return M
