using System.Text.Json;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Crash;

/// <summary>What <c>qemu-img check --output=json -f qed</c> (the oracle, run at test time) says about an image.</summary>
internal sealed record QemuCheck(int ExitCode, long Corruptions, long Leaks, long CheckErrors, string Report)
{
    /// <summary>Runs qemu-img check (read-only: it changes nothing, not even the need-check bit).</summary>
    public static QemuCheck Run(string workingDirectory, string image)
    {
        var result = Tools.QemuImgRaw(workingDirectory, "check", "--output=json", "-f", "qed", image);
        if (result.ExitCode is not (0 or 2 or 3))
        {
            // 1: the check could not run (an open failure, a read error): no counts to report.
            return new QemuCheck(result.ExitCode, -1, -1, -1, result.ToString());
        }
        using var json = JsonDocument.Parse(result.StdOut);
        long Count(string key) => json.RootElement.TryGetProperty(key, out var value) ? value.GetInt64() : 0;
        return new QemuCheck(result.ExitCode, Count("corruptions"), Count("leaks"), Count("check-errors"), result.ToString());
    }

    /// <summary>True when QEMU found neither corruption nor a failure to check (leaks allowed).</summary>
    public bool NoCorruption => ExitCode is 0 or 3 && Corruptions == 0 && CheckErrors == 0;
}
