/*
 * Shared editor code for the node-red-contrib-coolkit edit dialogs.
 *
 * Node-RED serves this module's resources/ folder to the editor; each node's HTML loads this
 * file with <script src="resources/node-red-contrib-coolkit/coolkit-editor.js"></script>, before
 * its own <script type="text/javascript"> block. Every node set loads it again, so it defines
 * window.CoolkitEditor once and does nothing when that already exists.
 *
 * Plain ES5 for the browser: no build step, no modules. jQuery, RED and the editor's widgets
 * (autoComplete, RED.popover.menu, RED.notify) are used only when a function is called, not while
 * this file loads.
 */
(function (window) {
    "use strict";

    if (window.CoolkitEditor) {
        return;
    }

    var MODULE = "node-red-contrib-coolkit";
    var ENV_REF = /^\$\{[^}]+\}$/;
    var DEVICE_ID = /^[0-9a-fA-F]{10}$/;

    /**
     * The message function of one node type: t("validation.port") reads
     * "<module>/<type>:<type>.label.validation.port" from that node's own catalog.
     */
    function i18n(type) {
        var ns = MODULE + "/" + type + ":" + type + ".label.";
        return function t(key, opts) {
            return window.RED._(ns + key, opts);
        };
    }

    /**
     * The value of a property as the open edit dialog shows it, else as the node has it. For
     * validators that depend on another field (Node-RED validates against the form while the
     * dialog is open and against the node when it is not).
     */
    function currentValue(node, prop) {
        var el = window.$("#node-input-" + prop);
        return el.length ? el.val() : (node ? node[prop] : undefined);
    }

    // ---- validators ------------------------------------------------------------------------------
    // Every validator declares two parameters (value, opt): Node-RED takes a one-parameter
    // validator for an old-style boolean one and coerces its result, so an error message (a
    // non-empty string) would count as valid and the field would never be marked. Messages come
    // from the node's own catalog: t("validation." + key).

    /**
     * A text value checked by `test`, with the cases every number field shares:
     *   options.when(node)  false: the field does not apply now (valid);
     *   options.allowAbsent (default true): undefined/null is valid (flows saved before the
     *                       property existed; the runtime uses its default);
     *   options.allowEmpty  (default true): "" (after trimming) is valid (the runtime default);
     *   a ${ENV_VAR} reference is always valid (the runtime resolves it).
     */
    function textValidator(t, key, options, test) {
        var o = options || {};
        var allowAbsent = o.allowAbsent !== false;
        var allowEmpty = o.allowEmpty !== false;
        return function (v, opt) {
            if (o.when && !o.when(this)) { return true; }
            if ((v === undefined || v === null) && allowAbsent) { return true; }
            var s = (v === undefined || v === null) ? "" : String(v).trim();
            if (s === "") { return allowEmpty ? true : t("validation." + key); }
            if (ENV_REF.test(s)) { return true; }
            return test(s) ? true : t("validation." + key);
        };
    }

    /** Digits only (no sign, point or exponent), from min to max. Options as textValidator. */
    function wholeNumber(t, key, min, max, options) {
        return textValidator(t, key, options, function (s) {
            return /^\d+$/.test(s) && Number(s) >= min && Number(s) <= max;
        });
    }

    /**
     * Any number JavaScript reads (Number(s)) from min to max; options.integer: a whole one.
     * Other options as textValidator.
     */
    function number(t, key, min, max, options) {
        var integer = !!(options && options.integer);
        return textValidator(t, key, options, function (s) {
            var n = Number(s);
            return isFinite(n) && n >= min && n <= max && (!integer || Math.floor(n) === n);
        });
    }

    /** One of `values`; undefined/null is valid (flows saved before the property existed). */
    function oneOf(t, key, values) {
        return function (v, opt) {
            return (v === undefined || v === null || values.indexOf(v) !== -1) ? true : t("validation." + key);
        };
    }

    /**
     * A 10-digit hexadecimal device ID; empty is valid unless allowEmpty(node) says otherwise
     * (called with the node being validated; default: always valid).
     */
    function deviceId(t, allowEmpty) {
        return function (v, opt) {
            var s = (v === undefined || v === null) ? "" : String(v);
            if (s === "" && (!allowEmpty || allowEmpty(this))) { return true; }
            return DEVICE_ID.test(s) ? true : t("validation.deviceid");
        };
    }

    /** The types of a typed-input value other than a plain string. */
    var DYNAMIC_TYPES = ["msg", "flow", "global"];
    var VALUE_TYPES = ["str", "msg", "flow", "global", "env"];

    /**
     * Is `s` a usable reference of typed-input type `type` (msg, flow, global: a property
     * expression, flow/global optionally with a "#:(store)::" prefix; env: a variable name)?
     */
    function validReference(type, s) {
        if (s === "") { return false; }
        if (type === "env") { return true; }
        var expr = (type === "flow" || type === "global") ? s.replace(/^#:\([^)]*\)::/, "") : s;
        var utils = window.RED && window.RED.utils;
        if (utils && typeof utils.validatePropertyExpression === "function") {
            return utils.validatePropertyExpression(expr) === true;
        }
        return true;
    }

    /**
     * A validator for a typed input `<field>` whose type is in `<typeField>`: for a plain string
     * (also when the type is missing: flows saved before typed inputs) `plain` decides; for msg,
     * flow, global and env the value must be a usable reference (message t("validation." + key)).
     *   options.typeAllowed(node, type): true, or the message for a type that does not fit now.
     */
    function typed(t, typeField, key, plain, options) {
        var o = options || {};
        return function (v, opt) {
            var type = currentValue(this, typeField) || "str";
            if (type === "str") { return plain ? plain.call(this, v, opt) : true; }
            if (VALUE_TYPES.indexOf(type) === -1) { return t("validation." + key); }
            if (o.typeAllowed) {
                var allowed = o.typeAllowed(this, type);
                if (allowed !== true) { return allowed; }
            }
            var s = (v === undefined || v === null) ? "" : String(v).trim();
            return validReference(type, s) ? true : t("validation." + key);
        };
    }

    /** A typed Device: deviceId(t, allowEmpty) for a string, a reference otherwise. */
    function typedDeviceId(t, typeField, allowEmpty, options) {
        return typed(t, typeField, "deviceid-typed", deviceId(t, allowEmpty), options);
    }

    /** How a typed value reads on the canvas: the ID itself, msg.target, flow.device, ${DEVICE}. */
    function typedLabel(value, type) {
        if (!value) { return ""; }
        if (!type || type === "str") { return String(value); }
        if (type === "env") { return "${" + value + "}"; }
        return type + "." + value;
    }

    // ---- device picker ---------------------------------------------------------------------------

    function $el(x) {
        return (typeof x === "string") ? window.$(x) : x;
    }

    /**
     * An autocomplete on a device ID field plus a browse button, both filled from the running
     * server's device list (GET coolkit/<serverId>/devices), for the open edit dialog:
     *   input         the device ID <input> (selector or jQuery);
     *   browseButton  the button that lists all devices in a menu (selector or jQuery;
     *                 default: the input's id + "-browse");
     *   serverSelect  the coolkit-server config <select> (selector or jQuery;
     *                 default "#node-input-server");
     *   t             the node's message function; keys picker.online, picker.offline,
     *                 picker.select-server, picker.deploy-first, picker.error, picker.none;
     *   filter(d)     optional: which devices to offer, asked each time the list is shown
     *                 (so it may depend on other fields);
     *   showVersion   optional: add the firmware version to each device's label.
     * The list is cached until the server changes or the browse button is pressed.
     */
    function devicePicker(options) {
        var input = $el(options.input);
        var button = $el(options.browseButton || ("#" + input.attr("id") + "-browse"));
        var source = deviceSource(options);

        input.autoComplete({
            minLength: 0,
            search: source.search
        });
        button.on("click", function (evt) {
            evt.preventDefault();
            source.browse(input, function (deviceid) {
                input.val(deviceid).trigger("change");
            });
        });
    }

    /**
     * The device field as a typed input: a device ID (type "string", with the device list as
     * autocomplete), or msg / flow / global / env. The browse button next to it lists the server's
     * devices and puts the chosen one in as a string. Options as devicePicker, plus:
     *   typeField  the hidden <input> holding the type (selector or jQuery; default: the input's
     *              id + "Type"); empty (flows saved before typed inputs) means "str";
     *   types      the other types offered (default ["msg", "flow", "global", "env"]).
     * Returns { types(list) } to change the other types offered while the dialog is open.
     */
    function deviceTypedInput(options) {
        var input = $el(options.input);
        var typeField = $el(options.typeField || ("#" + input.attr("id") + "Type"));
        var button = $el(options.browseButton || ("#" + input.attr("id") + "-browse"));
        var source = deviceSource(options);
        var strType = {
            value: "str",
            label: "string",
            icon: "red/images/typedInput/az.svg",
            autoComplete: function (value, done) { source.search(value, done); }
        };
        function typeList(others) {
            return [strType].concat(others || ["msg", "flow", "global", "env"]);
        }
        if (!typeField.val()) {
            typeField.val("str");
        }
        input.typedInput({ default: "str", types: typeList(options.types), typeField: typeField });
        button.on("click", function (evt) {
            evt.preventDefault();
            source.browse(input.next(".red-ui-typedInput-container"), function (deviceid) {
                input.typedInput("type", "str");
                input.typedInput("value", deviceid);
            });
        });
        return {
            types: function (others) {
                input.typedInput("types", typeList(others));
            }
        };
    }

    /**
     * The device list behind a picker: search(value, done) for an autocomplete, and
     * browse(anchor, onselect) for the menu of all devices. Options as devicePicker.
     */
    function deviceSource(options) {
        var server = $el(options.serverSelect || "#node-input-server");
        var t = options.t;
        var filter = options.filter;
        var cache = { serverId: null, devices: null };

        function selectedServer() {
            var v = server.val();
            return (v && v !== "_ADD_") ? v : null;
        }
        function describe(d) {
            var parts = [String(d.deviceid || "")];
            if (d.name) { parts.push(String(d.name)); }
            if (d.model) { parts.push(String(d.model)); }
            if (options.showVersion && d.romVersion) { parts.push(String(d.romVersion)); }
            parts.push(d.online ? t("picker.online") : t("picker.offline"));
            return parts.join(" · ");
        }
        function option(d) {
            return { value: String(d.deviceid), label: describe(d) };
        }
        function offered(list) {
            return filter ? list.filter(function (d) { return filter(d); }) : list;
        }
        function load(done) {
            var id = selectedServer();
            if (!id) {
                done({ message: t("picker.select-server") });
                return;
            }
            if (cache.serverId === id && cache.devices) {
                done(null, offered(cache.devices));
                return;
            }
            window.$.ajax({
                url: "coolkit/" + encodeURIComponent(id) + "/devices",
                dataType: "json",
                cache: false
            }).done(function (list) {
                cache.serverId = id;
                cache.devices = Array.isArray(list) ? list.filter(function (d) { return d && d.deviceid; }) : [];
                done(null, offered(cache.devices));
            }).fail(function (xhr, textStatus, err) {
                if (xhr.status === 404) {
                    done({ message: t("picker.deploy-first") });
                } else {
                    done({ message: t("picker.error", { error: err || textStatus || xhr.status }) });
                }
            });
        }

        server.on("change", function () {
            cache.devices = null;
        });

        return {
            search: function (value, done) {
                load(function (err, list) {
                    if (err) { done([]); return; }
                    var q = String(value || "").trim().toLowerCase();
                    done(list.filter(function (d) {
                        return !q || describe(d).toLowerCase().indexOf(q) !== -1;
                    }).map(option));
                });
            },
            browse: function (anchor, onselect) {
                cache.devices = null;
                load(function (err, list) {
                    if (err) {
                        window.RED.notify(err.message, { type: "warning", timeout: 4000 });
                        return;
                    }
                    if (list.length === 0) {
                        window.RED.notify(t("picker.none"), { type: "warning", timeout: 4000 });
                        return;
                    }
                    var menu = window.RED.popover.menu({
                        width: Math.max(300, anchor.outerWidth()),
                        maxHeight: 240,
                        options: list.map(option),
                        onselect: function (opt) {
                            onselect(opt.value);
                        }
                    });
                    menu.show({ target: anchor });
                });
            }
        };
    }

    window.CoolkitEditor = {
        i18n: i18n,
        currentValue: currentValue,
        devicePicker: devicePicker,
        deviceTypedInput: deviceTypedInput,
        typedLabel: typedLabel,
        DYNAMIC_TYPES: DYNAMIC_TYPES,
        validators: {
            deviceId: deviceId,
            typedDeviceId: typedDeviceId,
            typed: typed,
            wholeNumber: wholeNumber,
            number: number,
            oneOf: oneOf
        }
    };
})(window);
