using System.Globalization;
using System.Text.Json;
using Qed.Cli.Output;
using Qed.Formats;

namespace Qed.Tests.Cli;

/// <summary>Turns qemu-img info's JSON for one image back into the <see cref="ImageInfo"/> our writer prints: every field as QEMU reported it.</summary>
internal static class QemuInfoJson
{
    /// <summary>The values of one image object of <c>qemu-img info --output=json</c>.</summary>
    public static ImageInfo ToImageInfo(JsonElement root)
    {
        string? Text(string key) => root.TryGetProperty(key, out var value) ? value.GetString() : null;
        return new ImageInfo
        {
            FileName = Text("filename")!,
            Format = Text("format")!,
            VirtualSize = root.GetProperty("virtual-size").GetInt64(),
            ActualSize = root.TryGetProperty("actual-size", out var actual) ? actual.GetInt64() : null,
            ClusterSize = root.TryGetProperty("cluster-size", out var cluster) ? cluster.GetInt32() : null,
            DirtyFlag = root.TryGetProperty("dirty-flag", out var dirty) ? dirty.GetBoolean() : null,
            BackingFileName = Text("backing-filename"),
            FullBackingFileName = Text("full-backing-filename"),
            BackingFormat = Text("backing-filename-format"),
            Encrypted = root.TryGetProperty("encrypted", out var encrypted) && encrypted.GetBoolean(),
            Snapshots = root.TryGetProperty("snapshots", out var snapshots) ? [.. snapshots.EnumerateArray().Select(Snapshot)] : [],
            FormatSpecific = root.TryGetProperty("format-specific", out var specific)
                ? [.. specific.GetProperty("data").EnumerateObject().Select(p => Detail(p.Name, p.Value))]
                : [],
        };
    }

    private static ImageSnapshot Snapshot(JsonElement entry) => new()
    {
        Id = entry.GetProperty("id").GetString()!,
        Name = entry.GetProperty("name").GetString()!,
        VmStateSize = entry.GetProperty("vm-state-size").GetInt64(),
        DateSeconds = entry.GetProperty("date-sec").GetInt64(),
        DateNanoseconds = entry.GetProperty("date-nsec").GetInt64(),
        VmClockNanoseconds = entry.GetProperty("vm-clock-sec").GetInt64() * 1_000_000_000 + entry.GetProperty("vm-clock-nsec").GetInt64(),
        InstructionCount = entry.TryGetProperty("icount", out var icount) ? icount.GetInt64() : null,
    };

    private static ImageDetail Detail(string name, JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.True or JsonValueKind.False => new ImageDetail(name, value.GetBoolean() ? "true" : "false", ImageDetailKind.Boolean),
        JsonValueKind.Number => new ImageDetail(name, value.GetInt64().ToString(CultureInfo.InvariantCulture), ImageDetailKind.Number),
        JsonValueKind.Object => new ImageDetail(name, "", ImageDetailKind.Object) { Children = [.. value.EnumerateObject().Select(p => Detail(p.Name, p.Value))] },
        JsonValueKind.Array => new ImageDetail(name, "", ImageDetailKind.List) { Children = [.. value.EnumerateArray().Select(e => Detail("", e))] },
        _ => new ImageDetail(name, value.GetString()!, ImageDetailKind.Text),
    };
}
