using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Qed.Nbd.Protocol;

namespace Qed.Nbd.Client;

/// <summary>
/// An NBD URI as qemu and libnbd spell it: <c>nbd://HOST[:PORT]/EXPORT</c> (also <c>nbd+tcp://</c>) and
/// <c>nbd+unix:///EXPORT?socket=PATH</c>; the export name and the socket path are percent-decoded. <c>nbds</c> asks for
/// TLS, with libnbd's query parameters <c>tls-certificates=DIR</c> (<c>ca-cert.pem</c>, optional
/// <c>client-cert.pem</c>/<c>client-key.pem</c>), <c>tls-verify-peer=false</c> and <c>tls-hostname=NAME</c>.
/// </summary>
/// <remarks>
/// Parsed by hand rather than with <see cref="Uri"/>, which normalises unknown schemes in ways that would change an
/// export name (dot segments, case). Every refusal is one line that names the URI and what is wrong with it.
/// </remarks>
internal sealed record NbdUri
{
    /// <summary>The IANA port of NBD.</summary>
    public const int DefaultPort = 10809;

    /// <summary>The URI as given.</summary>
    public required string Text { get; init; }

    /// <summary>The unix socket path for <c>nbd+unix</c>, else null.</summary>
    public string? SocketPath { get; init; }

    /// <summary>The host for TCP (a name or an address, without the brackets of an IPv6 literal), else null.</summary>
    public string? Host { get; init; }

    /// <summary>The TCP port.</summary>
    public int Port { get; init; } = DefaultPort;

    /// <summary>The export name, decoded (empty: the server's default export).</summary>
    public string ExportName { get; init; } = "";

    /// <summary>TLS settings for <c>nbds</c> URIs, else null.</summary>
    public NbdClientTls? Tls { get; init; }

    /// <summary>True when <paramref name="name"/> looks like an NBD URI (<c>nbd</c> or <c>nbds</c>, optionally <c>+transport</c>, then <c>://</c>), so it is not to be taken as a file name.</summary>
    public static bool IsNbdUri(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        int colon = name.IndexOf("://", StringComparison.Ordinal);
        if (colon < 3)
        {
            return false;
        }
        string scheme = name[..colon];
        if (!scheme.StartsWith("nbd", StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }
        string rest = scheme[3..];
        if (rest.StartsWith('s') || rest.StartsWith('S'))
        {
            rest = rest[1..];
        }
        return rest.Length == 0 || (rest[0] == '+' && rest.Length > 1 && rest[1..].All(char.IsAsciiLetterOrDigit));
    }

    /// <summary>Parses <paramref name="text"/>.</summary>
    /// <exception cref="QedException">The URI is malformed or asks for something this client does not do (TLS, another transport); the message is one line.</exception>
    public static NbdUri Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (!IsNbdUri(text))
        {
            throw Invalid(text, "it does not start with nbd://, nbd+tcp:// or nbd+unix://");
        }
        int schemeEnd = text.IndexOf("://", StringComparison.Ordinal);
        string scheme = text[..schemeEnd].ToLowerInvariant();
        string rest = text[(schemeEnd + 3)..];
        bool tls = scheme.StartsWith("nbds", StringComparison.Ordinal);
        bool unix = (tls ? "nbd" + scheme[4..] : scheme) switch
        {
            "nbd" or "nbd+tcp" => false,
            "nbd+unix" => true,
            _ => throw Invalid(text, $"the transport '{scheme[(scheme.IndexOf('+', StringComparison.Ordinal) + 1)..]}' is not supported (use nbd://, nbd+tcp:// or nbd+unix://)"),
        };

        int fragment = rest.IndexOf('#', StringComparison.Ordinal);
        if (fragment >= 0)
        {
            throw Invalid(text, "a fragment (#...) is not allowed");
        }
        string? query = null;
        int question = rest.IndexOf('?', StringComparison.Ordinal);
        if (question >= 0)
        {
            query = rest[(question + 1)..];
            rest = rest[..question];
        }
        int slash = rest.IndexOf('/', StringComparison.Ordinal);
        string authority = slash >= 0 ? rest[..slash] : rest;
        string path = slash >= 0 ? rest[slash..] : "";
        string exportName = path.Length == 0 ? "" : Decode(text, path[1..], "export name");
        CheckExportName(text, exportName);

        string? socket = null;
        string? certificates = null;
        string? hostName = null;
        bool? verifyPeer = null;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (string parameter in (query ?? "").Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            int equals = parameter.IndexOf('=', StringComparison.Ordinal);
            string key = Decode(text, equals >= 0 ? parameter[..equals] : parameter, "query parameter");
            string value = equals >= 0 ? Decode(text, parameter[(equals + 1)..], "query parameter") : "";
            if (!seen.Add(key))
            {
                throw Invalid(text, key == "socket" ? "the socket is given twice" : $"the query parameter '{key}' is given twice");
            }
            switch (key)
            {
                case "socket" when unix:
                    socket = value;
                    break;
                case "tls-certificates" or "tls-verify-peer" or "tls-hostname" when !tls:
                    throw Invalid(text, $"'{key}' needs TLS (nbds://)");
                case "tls-certificates":
                    certificates = value.Length > 0 ? value : throw Invalid(text, "tls-certificates names no directory");
                    break;
                case "tls-hostname":
                    hostName = value.Length > 0 ? value : throw Invalid(text, "tls-hostname is empty");
                    break;
                case "tls-verify-peer":
                    verifyPeer = value switch
                    {
                        "true" or "1" or "yes" or "on" => true,
                        "false" or "0" or "no" or "off" => false,
                        _ => throw Invalid(text, $"tls-verify-peer must be true or false, not '{value}'"),
                    };
                    break;
                default:
                    throw Invalid(text, $"the query parameter '{key}' is not supported" + (key == "socket" ? " with TCP (use nbd+unix://)" : ""));
            }
        }
        var tlsSettings = tls ? new NbdClientTls(certificates, verifyPeer ?? true, hostName) : null;

        if (unix)
        {
            if (authority.Length != 0)
            {
                throw Invalid(text, $"nbd+unix:// takes no host (found '{authority}'): write nbd+unix:///EXPORT?socket=PATH");
            }
            if (string.IsNullOrEmpty(socket))
            {
                throw Invalid(text, "nbd+unix:// needs ?socket=PATH");
            }
            if (socket.Contains('\0', StringComparison.Ordinal))
            {
                throw Invalid(text, "the socket path contains a NUL byte");
            }
            return new NbdUri { Text = text, SocketPath = socket, ExportName = exportName, Tls = tlsSettings };
        }

        if (authority.Contains('@', StringComparison.Ordinal))
        {
            throw Invalid(text, "a user name is not supported");
        }
        var (host, port) = ParseAuthority(text, authority);
        return new NbdUri { Text = text, Host = host, Port = port, ExportName = exportName, Tls = tlsSettings };
    }

    /// <summary>The client options this URI asks for.</summary>
    public NbdClientOptions Options => Tls is null ? new NbdClientOptions() : new NbdClientOptions { Tls = Tls with { HostName = Tls.HostName ?? Host ?? "localhost" } };

    /// <summary>Where to connect.</summary>
    public EndPoint EndPoint =>
        SocketPath is not null ? new UnixDomainSocketEndPoint(SocketPath)
        : IPAddress.TryParse(Host, out var address) ? new IPEndPoint(address, Port)
        : new DnsEndPoint(Host!, Port);

    /// <summary>What a message calls the server: the socket path, or host and port.</summary>
    public string Server => SocketPath ?? (Host!.Contains(':', StringComparison.Ordinal) ? $"[{Host}]:{Port}" : $"{Host}:{Port}");

    /// <summary>
    /// The name qemu prints for the export (<c>image:</c> of qemu-img info): <c>nbd+unix:///EXPORT?socket=PATH</c> without
    /// the slash when the export name is empty, <c>nbd://HOST:PORT[/EXPORT]</c> with the port always and the name decoded.
    /// </summary>
    public string QemuName =>
        SocketPath is not null
            ? $"nbd{(Tls is null ? "" : "s")}+unix://{(ExportName.Length > 0 ? "/" + ExportName : "")}?socket={SocketPath}"
            : $"nbd{(Tls is null ? "" : "s")}://{Host}:{Port}{(ExportName.Length > 0 ? "/" + ExportName : "")}";

    /// <inheritdoc />
    public override string ToString() => Text;

    private static (string Host, int Port) ParseAuthority(string text, string authority)
    {
        string host;
        string? portText = null;
        if (authority.StartsWith('['))
        {
            int close = authority.IndexOf(']', StringComparison.Ordinal);
            if (close < 0)
            {
                throw Invalid(text, "the IPv6 address has no closing ']'");
            }
            host = authority[1..close];
            if (!IPAddress.TryParse(host, out var address) || address.AddressFamily != AddressFamily.InterNetworkV6)
            {
                throw Invalid(text, $"'{host}' is not an IPv6 address");
            }
            string after = authority[(close + 1)..];
            if (after.Length > 0)
            {
                portText = after.StartsWith(':') ? after[1..] : throw Invalid(text, $"unexpected '{after}' after the IPv6 address");
            }
        }
        else
        {
            int colon = authority.IndexOf(':', StringComparison.Ordinal);
            host = colon >= 0 ? authority[..colon] : authority;
            portText = colon >= 0 ? authority[(colon + 1)..] : null;
            host = Decode(text, host, "host");
            if (host.Length > 0 && !host.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or '_'))
            {
                throw Invalid(text, $"'{host}' is not a host name or address");
            }
        }
        if (host.Length == 0)
        {
            throw Invalid(text, "it names no host (nbd://HOST[:PORT]/EXPORT)");
        }
        int port = DefaultPort;
        if (portText is not null)
        {
            if (portText.Length == 0 || portText.Length > 5 || !portText.All(char.IsAsciiDigit)
                || !int.TryParse(portText, NumberStyles.None, CultureInfo.InvariantCulture, out port) || port < 1 || port > 65535)
            {
                throw Invalid(text, $"the port '{portText}' is not a number from 1 to 65535");
            }
        }
        return (host, port);
    }

    private static void CheckExportName(string text, string exportName)
    {
        if (Encoding.UTF8.GetByteCount(exportName) > NbdLimits.MaxStringBytes)
        {
            throw Invalid(text, $"the export name is longer than {NbdLimits.MaxStringBytes} bytes");
        }
        if (exportName.Contains('\0', StringComparison.Ordinal))
        {
            throw Invalid(text, "the export name contains a NUL byte");
        }
    }

    /// <summary>Percent-decodes <paramref name="part"/> strictly: a '%' needs two hex digits, and the bytes must be UTF-8.</summary>
    private static string Decode(string text, string part, string what)
    {
        if (!part.Contains('%', StringComparison.Ordinal))
        {
            return part;
        }
        var bytes = new List<byte>(part.Length);
        Span<byte> one = stackalloc byte[4];
        for (int i = 0; i < part.Length; i++)
        {
            char c = part[i];
            if (c == '%')
            {
                if (i + 2 >= part.Length || !char.IsAsciiHexDigit(part[i + 1]) || !char.IsAsciiHexDigit(part[i + 2]))
                {
                    throw Invalid(text, $"bad percent-escape in the {what} at '{part[i..Math.Min(part.Length, i + 3)]}'");
                }
                bytes.Add(byte.Parse(part.AsSpan(i + 1, 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture));
                i += 2;
            }
            else
            {
                Rune rune;
                if (!char.IsSurrogate(c))
                {
                    rune = new Rune(c);
                }
                else if (i + 1 < part.Length && char.IsSurrogatePair(c, part[i + 1]))
                {
                    rune = new Rune(c, part[++i]);
                }
                else
                {
                    throw Invalid(text, $"the {what} holds a lone UTF-16 surrogate");
                }
                int count = rune.EncodeToUtf8(one);
                for (int b = 0; b < count; b++)
                {
                    bytes.Add(one[b]);
                }
            }
        }
        try
        {
            return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes.ToArray());
        }
        catch (DecoderFallbackException)
        {
            throw Invalid(text, $"the {what} is not UTF-8 once decoded");
        }
    }

    private static QedException Invalid(string text, string reason) => new($"Invalid NBD URI '{text}': {reason}");
}
