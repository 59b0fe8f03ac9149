// The facerestore page: pick a photo, send it to POST /v1/restore?output=json, show the result.
// Plain JavaScript, no libraries, no build step: the page works offline, served by the app.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const form = $("form"), fileInput = $("file"), drop = $("drop"), submit = $("submit");
  const statusEl = $("status"), errorEl = $("error"), result = $("result");
  let file = null, limits = {}, urls = [], models = {};

  function showError(message) {
    errorEl.textContent = message;
    errorEl.hidden = false;
    statusEl.textContent = "";
  }
  function clearError() { errorEl.hidden = true; errorEl.textContent = ""; }
  function megabytes(n) { return (n / (1024 * 1024)).toFixed(n < 10 * 1024 * 1024 ? 1 : 0) + " MB"; }

  // Never a blank page: anything unexpected becomes a message.
  window.addEventListener("error", (e) => showError("Something went wrong on this page: " + (e.message || e)));
  window.addEventListener("unhandledrejection", (e) => showError("Something went wrong: " + (e.reason && e.reason.message || e.reason)));

  async function loadModels() {
    const select = $("model");
    try {
      const response = await fetch("/v1/models");
      if (!response.ok) throw new Error("the server answered " + response.status);
      const info = await response.json();
      limits = info.limits || {};
      select.textContent = "";
      models = {};
      for (const m of info.models) {
        const option = document.createElement("option");
        option.value = m.name;
        option.textContent = m.version && m.version !== m.name ? m.name + " (" + m.version + ")" : m.name;
        option.selected = m.default;
        select.appendChild(option);
        models[m.name] = m;
      }
      describeModel();
      for (const option of [...$("upscale").options]) {
        if (limits.max_upscale && Number(option.value) > limits.max_upscale) option.remove();
      }
      if (limits.max_upload_bytes) $("drop-hint").textContent = "JPEG, PNG, WebP, TIFF… up to " + megabytes(limits.max_upload_bytes);
      updateSubmit();
    } catch (err) {
      select.textContent = "";
      showError("Cannot reach the server to list the models (" + err.message + "). Reload the page to try again.");
    }
  }

  function updateSubmit() { submit.disabled = !file || !$("model").value; }

  // What the weight means depends on the model (CodeFormer: its fidelity; the others: a blend),
  // and some models' weights are not for every use: say both for the one chosen.
  function describeModel() {
    const m = models[$("model").value] || {};
    $("weight-meaning").textContent = m.weight || "";
    $("model-license").textContent = m.license ? "Licence: " + m.license : "";
  }
  $("model").addEventListener("change", () => { describeModel(); updateSubmit(); });

  function setFile(chosen) {
    clearError();
    if (!chosen) return;
    if (chosen.type && !chosen.type.startsWith("image/")) {
      showError(chosen.name + " is not an image (" + chosen.type + "). Choose a photo.");
      return;
    }
    if (limits.max_upload_bytes && chosen.size > limits.max_upload_bytes) {
      showError(chosen.name + " is " + megabytes(chosen.size) + "; this server takes photos up to " + megabytes(limits.max_upload_bytes) + ".");
      return;
    }
    file = chosen;
    $("drop-text").textContent = chosen.name + " (" + megabytes(chosen.size) + ")";
    updateSubmit();
  }

  fileInput.addEventListener("change", () => setFile(fileInput.files[0]));
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) {
    drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", (e) => {
    const files = e.dataTransfer && e.dataTransfer.files;
    if (files && files.length > 1) showError("Drop one photo at a time.");
    else if (files && files.length) setFile(files[0]);
  });
  $("weight").addEventListener("input", () => { $("weight-value").textContent = $("weight").value; });

  function setSplit(percent) {
    $("before-clip").style.clipPath = "inset(0 " + (100 - percent) + "% 0 0)";
    $("divider").style.left = percent + "%";
  }
  $("slider").addEventListener("input", () => setSplit(Number($("slider").value)));
  $("compare").addEventListener("pointermove", (e) => {
    if (e.buttons !== 1 && e.pointerType === "mouse") return;
    const box = $("compare").getBoundingClientRect();
    const percent = Math.max(0, Math.min(100, Math.round((e.clientX - box.left) / box.width * 100)));
    $("slider").value = percent;
    setSplit(percent);
  });

  function blobFromBase64(data, type) {
    const bytes = atob(data);
    const array = new Uint8Array(bytes.length);
    for (let i = 0; i < bytes.length; i++) array[i] = bytes.charCodeAt(i);
    return new Blob([array], { type: type });
  }
  function objectUrl(blob) { const url = URL.createObjectURL(blob); urls.push(url); return url; }

  function faceImage(b64, alt) {
    const img = document.createElement("img");
    img.src = "data:image/png;base64," + b64;
    img.alt = alt;
    return img;
  }

  function show(info) {
    for (const url of urls) URL.revokeObjectURL(url);
    urls = [];
    const restoredUrl = objectUrl(blobFromBase64(info.image, info.output.media_type));
    $("after").src = restoredUrl;
    $("before").src = objectUrl(file);
    $("slider").value = 50;
    setSplit(50);
    const stem = (file.name || "photo").replace(/\.[^.]*$/, "");
    $("download").href = restoredUrl;
    $("download").download = stem + "_restored" + info.output.ext;
    const t = info.timings_ms || {};
    $("summary").textContent = info.faces + (info.faces === 1 ? " face" : " faces") + " · " +
      info.output.width + "×" + info.output.height + " · " + ((t.total || 0) / 1000).toFixed(1) + " s" +
      (info.notes && info.notes.length ? " · " + info.notes.join("; ") : "");
    const faces = $("faces");
    faces.textContent = "";
    info.restored_faces.forEach((face, i) => {
      const figure = document.createElement("figure");
      figure.className = "face";
      const pair = document.createElement("div");
      pair.className = "pair";
      pair.appendChild(faceImage(info.cropped_faces[i], "face " + (i + 1) + " as found"));
      pair.appendChild(faceImage(face, "face " + (i + 1) + " restored"));
      const caption = document.createElement("figcaption");
      caption.textContent = "Face " + (i + 1) + ": input · restored";
      figure.appendChild(pair);
      figure.appendChild(caption);
      faces.appendChild(figure);
    });
    $("no-faces").hidden = info.faces > 0;
    result.hidden = false;
  }

  async function explain(response) {
    let detail = "";
    try { detail = (await response.json()).detail; } catch (_) { /* not JSON */ }
    if (typeof detail !== "string") detail = JSON.stringify(detail || response.statusText);
    if (response.status === 503) {
      const wait = response.headers.get("Retry-After");
      return "The server is busy: " + detail + (wait ? " (try again in " + wait + " s)" : "");
    }
    if (response.status === 413) return "Too large: " + detail;
    return "Cannot restore this photo: " + detail;
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!file) { showError("Choose a photo first."); return; }
    clearError();
    const data = new FormData();
    data.append("image", file, file.name);
    data.append("model", $("model").value);
    data.append("upscale", $("upscale").value);
    data.append("weight", $("weight").value);
    data.append("format", $("format").value);
    data.append("only_center_face", $("only_center_face").checked ? "true" : "false");
    data.append("aligned", $("aligned").checked ? "true" : "false");
    submit.disabled = true;
    statusEl.textContent = "Restoring " + file.name + "…";
    try {
      const response = await fetch("/v1/restore?output=json", { method: "POST", body: data });
      if (!response.ok) { showError(await explain(response)); return; }
      show(await response.json());
      statusEl.textContent = "Done.";
    } catch (err) {
      showError("The request failed (" + err.message + "). Is the server still running?");
    } finally {
      updateSubmit();
    }
  });

  loadModels();
})();
