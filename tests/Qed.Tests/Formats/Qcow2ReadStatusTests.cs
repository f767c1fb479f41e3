using System.Text.Json;
using Qed.Formats;
using Qed.Image;
using Qed.IO;
using Qed.Tests.Infrastructure;
using Qed.Tests.Interop;

namespace Qed.Tests.Formats;

/// <summary>The qcow2 device's allocation status against <c>qemu-img map --output=json</c> (run at test time): state and host offset of every byte.</summary>
public sealed class Qcow2ReadStatusTests
{
    /// <summary>Fixtures without a backing file or data file, so that every map entry is the top image's own.</summary>
    public static TheoryData<string> Standalone() => ["Q01", "Q02", "Q03", "Q04", "Q05", "Q06", "Q07", "Q08", "Q12", "Q13", "Q14", "Q15", "Q19"];

    [Theory]
    [MemberData(nameof(Standalone))]
    public async Task Status_agrees_with_qemu_img_map(string name)
    {
        var fixture = Qcow2Fixtures.Get(name);
        using var map = JsonDocument.Parse(Tools.QemuImg(Qcow2Fixtures.Directory, "map", "--output=json", "-f", "qcow2", fixture.FileName).StdOut);
        await using var device = await ImageFormats.Qcow2.OpenAsync(fixture.Path, new ImageOpenOptions { ReadOnly = true });
        int pieces = 0;
        foreach (var entry in map.RootElement.EnumerateArray())
        {
            long start = entry.GetProperty("start").GetInt64();
            long end = start + entry.GetProperty("length").GetInt64();
            bool data = entry.GetProperty("data").GetBoolean();
            bool present = entry.GetProperty("present").GetBoolean();
            long? offset = entry.TryGetProperty("offset", out var o) ? o.GetInt64() : null;
            var expected = data ? BlockState.Data : present ? BlockState.Zero : BlockState.Unallocated;
            for (long position = start; position < end;)
            {
                var status = await device.GetStatusAsync(position, end - position);
                Assert.True(status.State == expected, $"{name} at {position}: {status} where qemu-img map says {entry}");
                long expectedHost = offset is { } at ? at + (position - start) : -1;
                Assert.True(status.HostOffset == expectedHost, $"{name} at {position}: {status} where qemu-img map says {entry}");
                position += status.Length;
                pieces++;
            }
        }
        Assert.True(pieces > 0);
    }
}
