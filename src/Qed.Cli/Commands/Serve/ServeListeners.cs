using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Qed.Cli.Commands.Serve;

/// <summary>The listening sockets of <c>qed serve</c>: one unix socket (<c>-k</c>) or one TCP socket (<c>-b</c>, <c>-p</c>).</summary>
internal sealed class ServeListeners : IDisposable
{
    // Clients beyond -e wait in the backlog, as with qemu-nbd: the largest the kernel allows (it clamps this to
    // net.core.somaxconn), so that hundreds of clients at once wait rather than being refused.
    private const int Backlog = int.MaxValue;

    private ServeListeners(Socket socket, string address, string? unixPath)
    {
        Sockets = [socket];
        Address = address;
        UnixPath = unixPath;
    }

    /// <summary>The listening sockets.</summary>
    public IReadOnlyList<Socket> Sockets { get; }

    /// <summary>Where clients connect, for the verbose start-up line: <c>unix:/run/x.sock</c> or <c>127.0.0.1:10809</c>.</summary>
    public string Address { get; }

    /// <summary>The unix socket's path, removed on dispose; null for TCP.</summary>
    public string? UnixPath { get; }

    /// <summary>Binds and listens as <paramref name="settings"/> say.</summary>
    /// <exception cref="CliException">The address does not resolve, the port is not a port, or the bind fails; qemu-nbd's wording.</exception>
    public static ServeListeners Open(ServeSettings settings) =>
        settings.SocketPath is { } path ? OpenUnix(path) : OpenTcp(settings.BindAddress, settings.Port);

    private static ServeListeners OpenUnix(string path)
    {
        RemoveStaleSocket(path);
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            // Bound by its full path when that fits sun_path, so that /proc/net/unix shows where (MayBeListening reads it).
            string fullPath = Path.GetFullPath(path);
            socket.Bind(new UnixDomainSocketEndPoint(System.Text.Encoding.UTF8.GetByteCount(fullPath) < 108 ? fullPath : path));
            socket.Listen(Backlog);
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new CliException($"Failed to bind socket to {path}: {UnixReason(e)}");
        }
        catch (ArgumentException e)
        {
            // A path longer than sun_path.
            socket.Dispose();
            throw new CliException($"Failed to bind socket to {path}: {Program.Describe(e)}");
        }
        return new ServeListeners(socket, "unix:" + path, path);
    }

    /// <summary>
    /// A socket file left by a server that is gone is replaced; anything else at the path (a live server, a regular
    /// file) is kept, and the bind then fails. qemu-nbd unlinks the path whatever it is.
    /// </summary>
    private static void RemoveStaleSocket(string path)
    {
        if (ServeNative.IsSocket(path) && !MayBeListening(path))
        {
            FileCleanup.DeleteQuietly(path);
        }
    }

    /// <summary>
    /// True unless the kernel's list of unix sockets (<c>/proc/net/unix</c>) shows that no listening socket is bound
    /// at this path. Connecting to find out would count as a client, and a server without <c>-t</c> exits when that
    /// client leaves. The list holds paths as each server gave them: an absolute one must match; a relative one cannot
    /// be resolved, so its file name alone counts (a false alarm only refuses the bind).
    /// </summary>
    private static bool MayBeListening(string path)
    {
        const int Listening = 0x10000; // __SO_ACCEPTCON
        string fullPath = Path.GetFullPath(path);
        string name = Path.GetFileName(fullPath);
        try
        {
            foreach (string line in File.ReadLines("/proc/net/unix").Skip(1))
            {
                string[] fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (fields.Length < 8
                    || !int.TryParse(fields[3], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out int flags)
                    || (flags & Listening) == 0)
                {
                    continue;
                }
                string bound = string.Join(' ', fields[7..]);
                if (Path.IsPathRooted(bound) ? bound == fullPath : Path.GetFileName(bound) == name)
                {
                    return true;
                }
            }
            return false;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return true;
        }
    }

    private static ServeListeners OpenTcp(string host, string portText)
    {
        if (!int.TryParse(portText, NumberStyles.None, CultureInfo.InvariantCulture, out int port) || port > IPEndPoint.MaxPort)
        {
            // getaddrinfo's words for a service that is not a port number, as qemu-nbd prints them.
            throw new CliException($"address resolution failed for {host}:{portText}: Servname not supported for ai_socktype");
        }

        IPAddress[] addresses;
        if (IPAddress.TryParse(host, out var literal))
        {
            addresses = [literal];
        }
        else
        {
            try
            {
                addresses = Dns.GetHostAddresses(host);
            }
            catch (SocketException e)
            {
                throw new CliException($"address resolution failed for {host}:{portText}: {e.Message}");
            }
            if (addresses.Length == 0)
            {
                throw new CliException($"address resolution failed for {host}:{portText}: Name or service not known");
            }
        }

        // As qemu: the first address that binds wins.
        SocketException? last = null;
        foreach (var address in addresses)
        {
            var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                if (address.Equals(IPAddress.IPv6Any))
                {
                    socket.DualMode = true; // "::" takes IPv4 clients too, as qemu-nbd's -b ::
                }
                socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
                socket.Bind(new IPEndPoint(address, port));
                socket.Listen(Backlog);
                var bound = (IPEndPoint)socket.LocalEndPoint!;
                return new ServeListeners(socket, bound.ToString(), null);
            }
            catch (SocketException e)
            {
                socket.Dispose();
                last = e;
            }
        }
        throw new CliException($"Failed to bind socket: {last!.Message}");
    }

    /// <summary>
    /// strerror's words for a unix bind failure, as qemu-nbd prints them: .NET reports ENOENT (a missing directory) as
    /// EADDRNOTAVAIL, "Cannot assign requested address".
    /// </summary>
    private static string UnixReason(SocketException e) =>
        e.SocketErrorCode == SocketError.AddressNotAvailable ? "No such file or directory" : e.Message;

    /// <summary>Closes the sockets and removes the unix socket file.</summary>
    public void Dispose()
    {
        foreach (var socket in Sockets)
        {
            socket.Dispose();
        }
        if (UnixPath is not null)
        {
            FileCleanup.DeleteQuietly(UnixPath);
        }
    }
}
