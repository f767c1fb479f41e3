using System.Text.Json;

namespace Qed.Tests.Infrastructure;

/// <summary>A check report from <c>qed check --output=json</c> or <c>qemu-img check --output=json</c>; absent keys count as 0 (both print only non-zero counters).</summary>
internal sealed record CheckReport(int ExitCode, bool HasReport, long Total, long Allocated, long Fragmented, long Corruptions, long CorruptionsFixed,
    long Leaks, long LeaksFixed, long CheckErrors, ToolResult Raw)
{
    /// <summary>Parses what the tool printed; a run that printed no report (the image could not be opened) has <see cref="HasReport"/> false.</summary>
    public static CheckReport From(ToolResult result)
    {
        if (string.IsNullOrWhiteSpace(result.StdOut))
        {
            return new CheckReport(result.ExitCode, false, 0, 0, 0, 0, 0, 0, 0, 0, result);
        }
        using var json = JsonDocument.Parse(result.StdOut);
        long Get(string key) => json.RootElement.TryGetProperty(key, out var value) ? value.GetInt64() : 0;
        return new CheckReport(result.ExitCode, true, Get("total-clusters"), Get("allocated-clusters"), Get("fragmented-clusters"),
            Get("corruptions"), Get("corruptions-fixed"), Get("leaks"), Get("leaks-fixed"), Get("check-errors"), result);
    }

    public override string ToString() => Raw.ToString();
}
