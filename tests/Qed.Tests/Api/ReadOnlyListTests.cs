using Qed.Formats;

namespace Qed.Tests.Api;

/// <summary>The lists the library hands out are views: a caller that casts one back cannot reorder the probe or change a format's options.</summary>
public class ReadOnlyListTests
{
    [Fact]
    public void The_registry_and_each_formats_create_options_refuse_changes()
    {
        var lists = new List<System.Collections.IList> { (System.Collections.IList)ImageFormats.All };
        lists.AddRange(ImageFormats.All.Select(f => (System.Collections.IList)f.CreateOptions));

        // An empty list (a format without create options) has nothing to change.
        foreach (var list in lists.Where(l => l.Count > 0))
        {
            Assert.True(list.IsReadOnly);
            Assert.Throws<NotSupportedException>(() => list[0] = list[list.Count - 1]);
        }
        Assert.Equal(4, lists.Count(l => l.Count > 0)); // the registry, QED's, qcow2's and raw's create options
        Assert.Equal(ImageFormats.All.Count + 1, lists.Count);
        Assert.Same(ImageFormats.Qed, ImageFormats.All[0]);
    }
}
