using System.Globalization;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Locking;

/// <summary>The OFD locks the kernel shows in <c>/proc/locks</c> for one file: what QEMU and qed hold, seen from outside.</summary>
internal static class LockTable
{
    /// <summary>
    /// Every byte locked on <paramref name="path"/> by any open file description, sorted, with repeats (two holders of
    /// byte 100 give two entries, so a lock left behind is never hidden by an equal one). Only shared locks are expected:
    /// QEMU and qed never take exclusive ones, so one fails the test.
    /// </summary>
    public static IReadOnlyList<long> Bytes(string path)
    {
        string key = Key(path);
        // /proc/locks is generated as it is read: when other processes lock and unlock between two read calls, a line
        // can be repeated or skipped. Two snapshots that agree are a consistent view.
        var previous = Snapshot(key, path);
        for (int attempt = 0; attempt < 100; attempt++)
        {
            var next = Snapshot(key, path);
            if (next.SequenceEqual(previous))
            {
                return next;
            }
            previous = next;
        }
        throw new InvalidOperationException($"/proc/locks never read the same twice for {path}");
    }

    private static List<long> Snapshot(string key, string path)
    {
        var bytes = new List<long>();
        foreach (string line in ReadProcLocks())
        {
            // "1: OFDLCK ADVISORY  READ -1 00:1b:2159 100 101"; waiters are printed as "1: -> OFDLCK ...".
            string[] fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length < 8 || fields[1] != "OFDLCK" || fields[5] != key)
            {
                continue;
            }
            Assert.True(fields[3] == "READ", $"an exclusive lock on {path}: {line}");
            long start = long.Parse(fields[6], CultureInfo.InvariantCulture);
            long end = long.Parse(fields[7], CultureInfo.InvariantCulture);
            for (long b = start; b <= end; b++)
            {
                bytes.Add(b);
            }
        }
        bytes.Sort();
        return bytes;
    }

    /// <summary>The lines of /proc/locks, read with one large buffer so that the kernel produces them in as few calls as it can.</summary>
    private static string[] ReadProcLocks()
    {
        using var handle = File.OpenHandle("/proc/locks");
        byte[] buffer = new byte[1 << 20];
        int length = 0;
        int n;
        while ((n = RandomAccess.Read(handle, buffer.AsSpan(length), length)) > 0)
        {
            length += n;
            if (length == buffer.Length)
            {
                Array.Resize(ref buffer, buffer.Length * 2);
            }
        }
        return System.Text.Encoding.ASCII.GetString(buffer, 0, length).Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }

    /// <summary>Waits until <paramref name="holder"/> has taken its locks on <paramref name="path"/> (the set is not empty and stays the same), and returns them.</summary>
    public static IReadOnlyList<long> WaitForHolder(string path, BackgroundProcess holder)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        IReadOnlyList<long> previous = [];
        while (DateTime.UtcNow < deadline)
        {
            Assert.False(holder.HasExited, $"{holder} exited before locking {path}:\n{holder.Output}");
            var now = Bytes(path);
            if (now.Count > 0 && now.SequenceEqual(previous))
            {
                return now;
            }
            previous = now;
            Thread.Sleep(30);
        }
        throw new TimeoutException($"{holder} took no steady locks on {path} within 10 s; last seen: {Show(previous)}");
    }

    /// <summary>A set of bytes as the tests print it: <c>[100 101 103 201 203]</c>.</summary>
    public static string Show(IEnumerable<long> bytes) => "[" + string.Join(' ', bytes) + "]";

    /// <summary>The file's <c>MAJOR:MINOR:INODE</c> as /proc/locks prints it (device numbers in hex).</summary>
    private static string Key(string path)
    {
        var stat = Tools.Run("stat", ["-c", "%d %i", path]);
        Assert.True(stat.ExitCode == 0, stat.ToString());
        string[] parts = stat.StdOut.Trim().Split(' ');
        ulong device = ulong.Parse(parts[0], CultureInfo.InvariantCulture);
        // st_dev is encoded as glibc's makedev: minor's low 8 bits, major, then minor's high bits.
        ulong major = (device >> 8) & 0xfff;
        ulong minor = (device & 0xff) | ((device >> 12) & 0xfff00);
        return string.Create(CultureInfo.InvariantCulture, $"{major:x2}:{minor:x2}:{parts[1]}");
    }
}
