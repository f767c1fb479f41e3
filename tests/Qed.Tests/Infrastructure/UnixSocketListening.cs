using System.Diagnostics;
using System.Globalization;

namespace Qed.Tests.Infrastructure;

/// <summary>
/// Waits until a server listens on a unix socket. The socket file appears at bind(), before listen(): a client that
/// connects in between is refused (seen with qemu-nbd on a loaded machine). A probe connection would end a qemu-nbd
/// started without -t, so the kernel's table of unix sockets is read instead.
/// </summary>
internal static class UnixSocketListening
{
    /// <summary>__SO_ACCEPTCON in the Flags column of /proc/net/unix: the socket is listening.</summary>
    private const uint AcceptingConnections = 0x10000;

    /// <summary>True when a socket bound to <paramref name="path"/> listens.</summary>
    public static bool IsListening(string path)
    {
        string fullPath = Path.GetFullPath(path);
        // Num RefCount Protocol Flags Type St Inode Path
        foreach (string line in File.ReadLines("/proc/net/unix").Skip(1))
        {
            string[] fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length >= 8 && (fields[7] == path || fields[7] == fullPath)
                && (uint.Parse(fields[3], NumberStyles.HexNumber, CultureInfo.InvariantCulture) & AcceptingConnections) != 0)
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>Waits until <paramref name="process"/> listens on <paramref name="path"/>; throws with its stderr when it exits first, or after <paramref name="timeout"/>.</summary>
    public static void WaitFor(string path, Process process, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (!IsListening(path))
        {
            if (process.HasExited)
            {
                throw new InvalidOperationException($"{process.StartInfo.FileName} exited with {process.ExitCode}: {process.StandardError.ReadToEnd()}");
            }
            if (clock.Elapsed > timeout)
            {
                throw new TimeoutException($"{process.StartInfo.FileName} did not listen on {path} within {timeout.TotalSeconds:F0} s");
            }
            Thread.Sleep(5);
        }
    }
}
